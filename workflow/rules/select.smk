# Selection from the screening runs.


rule select:
    input:
        CODE,
        f"data/prepared/{TARGET}",
        expand("results/baseline/{task}/seed-{seed}", task=TARGET, seed=SEEDS),
        expand("results/screen/{aux}/seed-{seed}", aux=SCREENED, seed=SEEDS),
    output:
        "results/selection.json",
        "results/selection.parquet",
        "results/selection.provenance.json",
    params:
        select=PARAMS["select"],
        holdout=PARAMS["train"]["dev_holdout"],
        candidates=CANDIDATES,
        seeds=SEEDS,
    conda:
        "../envs/auxsel.yaml"
    log:
        "logs/select.log",
    shell:
        "python -m stages.select 2>&1 | tee {log}"

