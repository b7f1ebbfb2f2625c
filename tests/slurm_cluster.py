"""A single-node SLURM (munged, slurmctld, slurmd) on this machine, for the profile's test.

Started from Debian's packages with a minimal slurm.conf in a temp dir; every daemon runs in the
foreground under Popen so it is stopped by its pid. See ../shared/notes/slurm.md for why each
setting is there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ETC_CONF = Path("/etc/slurm/slurm.conf")
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]


def why_not_available() -> str | None:
    """None when SLURM can be started here, else the reason (printed by the skipped test)."""
    if os.geteuid() != 0:
        return "starting SLURM needs root"
    if not all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        if not shutil.which("apt-get"):
            return "slurm packages missing and no apt-get"
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-300:]}"
    if ETC_CONF.exists() and not ETC_CONF.is_symlink():
        return f"{ETC_CONF} exists (a real SLURM install); not touching it"
    return None


def _free_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 4000


class Cluster:
    def __init__(self, root: Path, partition: str = "auxsel") -> None:
        self.root, self.partition = root, partition
        self.procs: list[subprocess.Popen] = []
        self.host = socket.gethostname()

    def conf(self) -> str:
        state = self.root / "state"
        spool = self.root / "spool"
        for d in (state, spool):
            d.mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        mem = max(1000, int(_free_mb() * 0.8))
        return f"""ClusterName=auxsel
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd.log
NodeName={self.host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""

    def start(self) -> None:
        conf = self.root / "slurm.conf"
        conf.write_text(self.conf())
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        if ETC_CONF.is_symlink():
            ETC_CONF.unlink()
        # the jobstep plugin strips SLURM_* variables, so SLURM_CONF alone is not seen by srun
        ETC_CONF.symlink_to(conf)
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        self._spawn(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "-F", "--force"])
        time.sleep(1)
        self._spawn(["slurmctld", "-D", "-i", "-f", str(conf)])
        time.sleep(1)
        self._spawn(["slurmd", "-D", "-f", str(conf)])
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if out in ("idle", "mixed"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node did not become idle: sinfo says {out!r}; logs in {self.root}")

    def _spawn(self, cmd: list[str]) -> None:
        log = open(self.root / f"{Path(cmd[-1] if cmd[0] == 'runuser' else cmd[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        """Stop every daemon this object started, by pid; remove the config link."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if ETC_CONF.is_symlink():
            ETC_CONF.unlink()
