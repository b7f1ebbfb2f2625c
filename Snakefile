# auxsel workflow. Settings: params.yaml (validated against workflow/schemas/params.schema.yaml).
# Runtime settings: profiles/default (auto-loaded), profiles/slurm for a cluster.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
