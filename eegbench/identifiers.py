"""The patterns of every identifier that names a result path or a leaderboard cell.

Method ids, task ids, backbone names, layer settings, hyperparameter tags and subjects become
folder and file names of the result store and cells of the board. Each pattern admits a word that
starts with a letter or digit (so never ``.`` or ``..``) and no control character, so no
identifier can lead out of the store or inject markup. The submission metadata, the result record
and the harness's checks of what a worker returns all use these.
"""

from __future__ import annotations

#: method ids: the ``id`` of a ``submission.yaml`` (as :class:`eegbench.submissions.SubmissionMeta` requires)
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
#: task ids (as :class:`eegbench.tasks.Task` requires)
TASK_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
#: subject labels, BIDS style (``sub-01``)
SUBJECT_PATTERN = r"^sub-[A-Za-z0-9]+$"
#: ``default``, or ``hp-`` and 10 hex digits of the overrides' hash (:func:`eegbench.plan.hyperparameter_tag`)
HP_TAG_PATTERN = r"^(default|hp-[0-9a-f]{10})$"
#: a sha256 hex digest
SHA256_PATTERN = r"^[0-9a-f]{64}$"
_WORD = r"[A-Za-z0-9][A-Za-z0-9._-]*"
#: a registered name (``vit_b``), ``timm:<model>[.<tag>]`` or ``open_clip:<arch>[/<tag>]``; the one "/"
#: of an open_clip tag makes a sub-folder of the store, as it always has, and never a way out of it
BACKBONE_PATTERN = rf"^{_WORD}(:{_WORD}(/{_WORD})?)?$"
_LAYER_KEY = rf"{_WORD}(:[a-z][a-z_]*)?"  # a layer name (a module path), with a non-default pooling
#: how a method labels the layers it uses (:meth:`eegbench.submissions.Method.layer_setting`): ``auto``,
#: ``final``, a layer key (``blocks.3``, ``blocks.11:mean``), or layer keys joined by "+", optionally after a
#: lower-case label and ":" (``multi:blocks.1+final``)
LAYER_SETTING_PATTERN = rf"^([a-z][a-z0-9-]*:)?{_LAYER_KEY}(\+{_LAYER_KEY})*$"
