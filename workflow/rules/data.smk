# Data: fetch the pinned archives (on the submit host: compute nodes often have no internet),
# then prepare every task defined in params.yaml and compute its frozen encoder layers once.


localrules:
    fetch,


rule fetch:
    input:
        CODE,
    output:
        directory("data/raw/{archive}"),
    conda:
        "../envs/auxsel.yaml"
    log:
        "logs/fetch/{archive}.log",
    shell:
        "python -m stages.fetch{PARAMS_ARG} --archive {wildcards.archive} > {log} 2>&1"


rule prepare:
    input:
        CODE,
        lambda w: prepare_inputs(w.task),
    output:
        directory(P("data/prepared/{task}")),
    params:
        spec=lambda w: PARAMS["tasks"][w.task],
        seed=PARAMS["prepare"]["seed"],
        model=PARAMS["model"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wildcards, attempt: 20 * attempt,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/prepare/{task}.log"),
    shell:
        "python -m stages.prepare{PARAMS_ARG} --task {wildcards.task} > {log} 2>&1"


rule features:
    input:
        CODE,
        P("data/prepared/{task}"),
        lambda w: encoder_inputs(),
    output:
        directory(P("data/features/{task}")),
    params:
        model=PARAMS["model"],
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=lambda wildcards, attempt: 30 * attempt,
        gpu=GPU,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/features/{task}.log"),
    shell:
        "python -m stages.features{PARAMS_ARG} --task {wildcards.task} > {log} 2>&1"
