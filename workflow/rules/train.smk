# Training: single-task baselines, pairwise screening of each candidate, final runs.


rule baseline:
    input:
        CODE,
        task_data([TARGET]),
    output:
        directory(P("results/baseline/{task}/seed-{seed}")),
    params:
        train=TRAIN_PARAMS,
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=lambda wildcards, attempt: 60 * attempt,
        gpu=GPU,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/baseline/{task}/seed-{seed}.log"),
    shell:
        "python -m stages.baseline{PARAMS_ARG} --task {wildcards.task} --seed {wildcards.seed} > {log} 2>&1"


rule screen:
    input:
        CODE,
        lambda w: screen_inputs(w.aux),
    output:
        directory(P("results/screen/{aux}/seed-{seed}")),
    params:
        train=TRAIN_PARAMS,
        screen=PARAMS["screen"],
        method=lambda w: PARAMS[PARAMS["screen"]["method"]],
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=lambda wildcards, attempt: 60 * attempt,
        gpu=GPU,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/screen/{aux}/seed-{seed}.log"),
    shell:
        "python -m stages.screen{PARAMS_ARG} --aux {wildcards.aux} --seed {wildcards.seed} > {log} 2>&1"


rule final:
    input:
        CODE,
        task_data([TARGET, *CANDIDATES]),
        lambda w: final_inputs(w.method),
    output:
        directory(P("results/final/{method}/seed-{seed}")),
    params:
        train=TRAIN_PARAMS,
        final_train=PARAMS["final"].get("train", {}),
        candidates=CANDIDATES,
        methods={k: PARAMS[k] for k in ("avil", "avil_literal", "diw")},
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=lambda wildcards, attempt: 120 * attempt,
        gpu=GPU,
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/final/{method}/seed-{seed}.log"),
    shell:
        "python -m stages.final{PARAMS_ARG} --method {wildcards.method} --seed {wildcards.seed} > {log} 2>&1"
