# Selection from the screening runs, and the report.


rule select:
    input:
        "stages/select.py",
        "src/auxsel/select.py",
        expand("results/baseline/{task}/seed-{seed}", task=TARGET, seed=SEEDS),
        expand("results/screen/{aux}/seed-{seed}", aux=CANDIDATES, seed=SEEDS),
    output:
        "results/selection.json",
        "results/selection.parquet",
        "results/selection.provenance.json",
    params:
        select=PARAMS["select"],
        candidates=CANDIDATES,
        seeds=SEEDS,
    conda:
        "../envs/auxsel.yaml"
    log:
        "logs/select.log",
    shell:
        "python -m stages.select 2>&1 | tee {log}"


rule report:
    input:
        "stages/report.py",
        "results/selection.json",
        expand("results/final/{method}/seed-{seed}", method=final_methods(), seed=SEEDS),
    output:
        "results/report/index.html",
        "results/report/metrics.json",
        "results/report/screen_weights.csv",
        "results/report/final_dev.csv",
    conda:
        "../envs/auxsel.yaml"
    log:
        "logs/report.log",
    shell:
        "python -m stages.report 2>&1 | tee {log}"
