"""segreg_lite: semi-supervised segmentation with registration-made pseudo-labels.

Companion package of the segreg-lite book, after Li et al., "A Unified Framework for
Semi-Supervised Image Segmentation and Registration" (arXiv 2502.03229, ISBI 2025).

The modules, one idea each, in the order data flows through a run:

- ``labels``: the seg4 label table (names, colours) every data path shares.
- ``template``, ``cohort``: the embedded MNI template and the seeded cohort of 2D subjects made from it.
- ``oasis``, ``nifti``, ``realscan``: real data: neurite-OASIS 2D, your own NIfTI slices, one real T1 slice.
- ``container``: the one ``Data`` container (below the loaders, which fill it) and its ``DataRecipe``.
- ``data``: ``load_data``, which fills ``Data`` from any of those and records its recipe; ``from_recipe``.
- ``checks``: the shared input checks and the one label conversion (``one_hot``, ``as_soft``).
- ``limits``: the checks of plain settings (counts, seeds, fractions, image sizes) that the API and the CLI share.
- ``splits``: the seeded, nested subject split (train / val / test, annotated or not).
- ``config``: ``TrainConfig`` and its presets (cpu, quick, sweep, paper, smoke).
- ``train``: device, mixed precision, seeds, fresh models and ``fit``, the one training loop.
- ``transforms``, ``augment``: displacement fields and warping; training augmentation.
- ``unet``, ``regnet``: the two networks.
- ``losses``: the segmentation and registration losses.
- ``supervised``: the segmenter's training, inference and evaluation; the supervised methods.
- ``registration``: registration training, inference, multi-atlas propagation; ``reg_only``.
- ``pretrained``: the shipped pre-trained registration network.
- ``meanteacher``: the Mean Teacher baseline.
- ``tta``, ``pseudo``: test-time augmentation; soft pseudo-labels from atlases and TTA maps.
- ``joint``: the joint method's rounds.
- ``context``: the run context every method is given (``Run``: seed, device, log, shared pre-trained
  models, checkpoints), below the methods.
- ``methods``: the registry of methods the comparison runs.
- ``metrics``: Dice, Hausdorff distances, folding and log-Jacobian statistics.
- ``runfolder``, ``checkpoint``, ``io``: the run folder, checkpoints and atomic writes; ``resultfiles``:
  what a results file must hold.
- ``experiment``: one run of the chosen methods on one split, written to a run folder.
- ``sweep``: runs over fractions and seeds; ``report``: every table, CSV and statistic of them.
- ``jobs``: where a sweep's runs run: a process pool, or submitit jobs (local processes, a Slurm array).
- ``peers``: ANTs, the classical registration to compare with (optional).
- ``plotting``, ``book``: figures, and the helpers the book's chapters import.
- ``cli``: the ``segreg-lite`` command.

Importing the package is cheap: submodules are imported where they are used.
"""
__version__ = "0.1.0"
