# The report: HTML page, DVC metrics and plot data.


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
