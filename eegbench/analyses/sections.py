"""Leaderboard sections built from analysis records: data scaling, backbone scaling, RSA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eegbench.records import AnalysisRecord, ResultRecord


def analysis_sections(analyses: Sequence[AnalysisRecord], records: Sequence[ResultRecord], page: str,
                      plot_dir: Path | None = None) -> list[str]:
    """Markdown lines of the analysis sections of one task page (none without analysis records).

    Parameters
    ----------
    analyses : sequence of AnalysisRecord
        The analysis records of the page's (task, version).
    records : sequence of ResultRecord
        The page's result records, to tell whether a backbone-scaling record is still current.
    page : str
        The page name, prefix of the plot files.
    plot_dir : path, optional
        Where to write the plots (none are written or linked without it).
    """
    from eegbench.analyses.rsa import RSAResult
    from eegbench.analyses.scaling import BackboneScaling, DataScaling, records_digest

    by_kind = {kind: sorted((a for a in analyses if a.kind == kind), key=lambda a: a.name)
               for kind in ("data-scaling", "backbone-scaling", "rsa")}
    lines: list[str] = []

    def plot(result, name: str, alt: str) -> None:
        if plot_dir is not None:
            result.plot(plot_dir / f"{page}-{name}.png")
            lines.extend([f"![{alt}]({page}-{name}.png)", ""])

    if by_kind["data-scaling"]:
        lines += ["## Data scaling", "",
                  "Each method trained on nested fractions of every subject's training images (the same seeded "
                  "subsets for every method), scored on the test images; then, with all training images, on test "
                  "responses averaged over 1, 2, 4 ... all repetitions. Mean ± SD across subjects; fits of top-1 "
                  "against log2(amount) with 95 % confidence bands.", ""]
        for record in by_kind["data-scaling"]:
            result = DataScaling(record)
            lines += [f"### {result.title()}", "", result.table(), "", result.repetition_table(), "",
                      *result.summary().splitlines(), ""]
            plot(result, f"data-scaling-{record.name}", "top-1 against training images and test repetitions")
    if by_kind["backbone-scaling"]:
        lines += ["## Backbone scaling", "",
                  "Top-1 against the vision backbone's parameter count (from the backbone registry), for the final "
                  "layer and the validation-selected layer; Pearson r between top-1 and log(parameters) with its "
                  "two-sided p-value (3 or more backbones).", ""]
        for record in by_kind["backbone-scaling"]:
            result = BackboneScaling(record)
            if record.inputs.get("records_digest") != records_digest(records):
                lines += ["*The result files changed since this analysis was computed; rerun `eegbench scaling "
                          "backbones` to update it.*", ""]
            lines += [result.table(), "", *result.summary().splitlines(), ""]
            plot(result, "backbone-scaling", "top-1 against backbone parameters")
    if by_kind["rsa"]:
        lines += ["## Brain similarity (RSA)", "",
                  "Spearman correlation between each layer's RDM (correlation distance between test-image features) "
                  "and the brain RDM at each time point (correlation distance between channel patterns of the "
                  "averaged, normalised test responses), averaged over subjects. Noise ceiling: split-half "
                  "reliability of the brain RDMs (Spearman-Brown). p: permutation test of image labels, family-wise "
                  "over layers and time points (maximum statistic).", ""]
        for record in by_kind["rsa"]:
            result = RSAResult(record)
            lines += [f"### {record.config['backbone']}", "", result.table(), "", result.summary(), ""]
            plot(result, f"rsa-{record.name}", "RSA time-by-layer heatmap")
    return lines
