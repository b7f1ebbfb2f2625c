# Selection from the screening runs.


rule select:
    input:
        CODE,
        P(f"data/prepared/{TARGET}"),
        expand(P("results/baseline/{task}/seed-{seed}"), task=TARGET, seed=SEEDS),
        expand(P("results/screen/{aux}/seed-{seed}"), aux=SCREENED, seed=SEEDS),
    output:
        P("results/selection.json"),
        P("results/selection.parquet"),
        P("results/selection.provenance.json"),
    params:
        select=PARAMS["select"],
        holdout=PARAMS["train"]["dev_holdout"],
        candidates=CANDIDATES,
        seeds=SEEDS,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/select.log"),
    shell:
        "python -m stages.select{PARAMS_ARG} 2>&1 | tee {log}"

