"""The pipeline's answer made visible: tables (`tables`), figures (`plots`) and the HTML page (`html`).

The stage (`stages/report.py`) reads the artifacts and writes the files; this package only turns
rows into rows, PNG bytes and HTML text.
"""

from __future__ import annotations

from auxsel.report.tables import (bands, final_table, first_row_per_epoch, fit_warnings, format_final, format_screen, learned,
                                  mean_by_epoch, merge_outcome, power_sentence, provenance_table, shortened_merges, wide)

__all__ = ["bands", "final_table", "first_row_per_epoch", "fit_warnings", "format_final", "format_screen", "learned",
           "mean_by_epoch", "merge_outcome", "power_sentence", "provenance_table", "shortened_merges", "wide"]
