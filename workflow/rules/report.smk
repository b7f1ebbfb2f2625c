# The report: HTML page, DVC metrics and plot data, figures for `snakemake --report report.html`.

report: "../report/workflow.rst"


rule report:
    input:
        CODE,
        expand(P("data/prepared/{task}"), task=[TARGET, *CANDIDATES]),
        P("results/selection.json"),
        P("results/selection.parquet"),
        P("results/selection.provenance.json"),
        expand(P("results/baseline/{task}/seed-{seed}"), task=TARGET, seed=SEEDS),
        expand(P("results/screen/{aux}/seed-{seed}"), aux=SCREENED, seed=SEEDS),
        expand(P("results/final/{method}/seed-{seed}"), method=final_methods(), seed=SEEDS),
    output:
        report(
            P("results/report/index.html"),
            caption="../report/index.rst",
            category="1. Overview",
            labels={"figure": "full report (HTML)"},
        ),
        P("results/report/metrics.json"),
        P("results/report/screen_weights.csv"),
        P("results/report/final_dev.csv"),
        report(
            P("results/report/figures/gains.png"),
            caption="../report/gains.rst",
            category="2. Screening",
            labels={"figure": "dev gain per candidate"},
        ),
        report(
            P("results/report/figures/screen_weights.png"),
            caption="../report/screen_weights.rst",
            category="2. Screening",
            labels={"figure": "screening weights per epoch"},
        ),
        report(
            P("results/report/figures/final_test.png"),
            caption="../report/final_test.rst",
            category="3. Final runs",
            labels={"figure": "test metric per method"},
        ),
        report(
            P("results/report/figures/final_weights.png"),
            caption="../report/final_weights.rst",
            category="3. Final runs",
            labels={"figure": "final-run weights per epoch"},
        ),
        P("results/report/provenance.json"),
    params:
        # what the report reads from params.yaml (a change rebuilds it)
        report={
            "target": TARGET,
            "candidates": CANDIDATES,
            "seeds": SEEDS,
            "methods": final_methods(),
            "recommend_level": PARAMS["select"]["level"],  # the recommendation's family-wise level
            "screen": PARAMS["screen"]["method"],
        },
    conda:
        "../envs/auxsel.yaml"
    log:
        P("logs/report.log"),
    shell:
        "python -m stages.report{PARAMS_ARG} 2>&1 | tee {log}"
