"""Per-target profiles: every number of the sparse kernels and rules that was fitted by measurement.

A :class:`TargetProfile` holds, for one target, the cache size the default configs block for, the
code-size budgets that bound compile time, the parallel split and the density thresholds of
``relay_passes.sparse_rules.SparseRules``. :func:`profile_for` picks the profile of a
``tvm.target.Target``. Numbers that were not measured on a target say where they were copied
from (:attr:`TargetProfile.provenance`); the measurements themselves are in
``docs/sparse-kernels.md``.
"""

import dataclasses
import math
from dataclasses import dataclass

KIB = 1024


@dataclass(frozen=True)
class TargetProfile:
    """The fitted numbers of one target.

    Attributes
    ----------
    name : str
    family : str
        ``"x86"``, ``"arm_cpu"`` or ``"gpu"`` (``schedules.target_info.target_family``).
    measure : str
        The command that measures this profile's numbers on the target.
    provenance : str
        Which numbers were measured on the target and which were copied, from where.
    l1_data_bytes : int
        The CPU's L1 data cache (a fact of the hardware, not fitted).
    input_slab_bytes : int
        The part of the L1 data cache that a channel block's input slab may take (the default
        configs' channel blocking).
    tile_waste : float
        Most computed outputs per valid output a default register tile may cost (output widths
        and heights padded to whole vectors and tiles): wider vectors or more rows are dropped above it.
    vector_waste : float or None
        Most computed outputs per valid output that a default sparse config's vector width may
        cost: vectors of half the lanes are taken above it. On cores with as many full-width FMA
        pipes as narrower ones, a vector of twice the lanes does twice the work per instruction and
        pays for more waste than a tile does; None: ``tile_waste``.
    code_budget_default : int
        One quantity, the size of the literal-weight code in vector FMAs
        (``schedules.sparse_cpu.config.estimated_code_size``; compile time grows with it), bounds
        three uses: the most a default config takes literal code for (the compact code above it) ...
    code_budget_tuning : int
        ... the most a tuner is offered as a literal-code candidate ...
    code_budget_ceiling : int
        ... and the most any literal-code config is made (fewer rows per tile above it).
    parallel_tasks : int
        Parallel tasks a layer is cut into by default (row blocks x filter parts).
    pixel_blocks : int
        Blocks of an image's pixels that a default config gives its own tasks: row blocks where
        the tasks copy their own input, column blocks of a one-row map (a 1x1 layer's pixels,
        an im2col row).
    im2col_bytes : int
        Largest im2col input of a default config on maps a quarter of a vector wide or less.
    strided_im2col_bytes : int
        Largest im2col input of a strided layer's default config.
    pattern_max_density, small_map_pixels, small_map_pattern_max_density, block_max_density, min_macs
        The defaults of ``relay_passes.sparse_rules.SparseRules``: where a sparse layer is
        worth its kernel on this target.
    pattern_3x3_min_pixels : int or None
        The rule-based mapping (``tvm_sparse.mapping.rules``) gives a 3x3 layer a pattern when its
        output map has more pixels than this, else block-punched; None: block-punched always
        (pattern kernels were slower than block-punched ones of equal density on every 3x3 layer).
    panel_pixels : int or None
        The dense pointwise kernel (``schedules.dense.pointwise``) on maps of more pixels than this
        computes the output in panels of whole rows of at most this many pixels, each panel's input
        copied channel block by channel block into a contiguous buffer of ``input_slab_bytes``;
        None: no panels (every tile reads the whole input column it needs).
    panel_accumulator_bytes : int
        Most bytes of the partial sums of one panel (its filters x its pixels), kept between the
        channel blocks.
    panel_min_channels : int
        Fewest input channels of a convolution computed in panels: on shorter reductions the input
        column of a tile stays in the L1 cache, and the copy costs more than it saves.
    panel_min_filters : int
        Fewest output channels of a convolution computed in panels: with fewer, a panel's input
        copy serves too few filter tiles to pay for itself.
    panel_min_channels_in_l2 : int
        Fewest input channels of a convolution computed in panels when its whole input fits in
        ``l2_bytes``: the tiles then read their input from the L2 cache, and a short reduction
        does not amortize the panel's partial sums (stored and reloaded once per output).
    panel_task_multiple : int or None
        The parallel tasks of a layer in panels (its panels of pixels x its groups of filters)
        are a multiple of this where its filters allow, so that they split evenly between the
        threads (an odd count on two threads leaves one core idle for a task); None, or where no
        group of filters gives such a count: at least ``parallel_tasks`` tasks.
    l2_bytes : int or None
        The CPU's L2 cache per core (a fact of the hardware); None: unknown, every input is taken
        to fit.
    winograd_min_channels : int or None
        Dense 3x3 stride-1 convolutions with at least this many input and output channels run by
        Winograd's F(m x m, 3 x 3) (``schedules.dense.winograd``); None: never (direct only).
    winograd_max_work : float
        Most multiplications of Winograd's products, as a fraction of the direct convolution's, of a
        layer run by Winograd (``schedules.dense.winograd.product_work``): on small maps most of
        its tiles are padding, and its transforms cost more than the products save.
    pointwise_pixel_vectors : int
        Vectors of pixels in the register tile of the dense pointwise kernel with pixels in the
        lanes (``schedules.dense.pointwise.PointwiseConv2dRows.default_tile``) on maps that hold a
        multiple of them: more vectors and fewer filters load fewer operands per FMA, which pays
        on cores with two FMA pipes per two load ports.
    one_row_prefetch_tiles : int
        Register tiles ahead that the default compact sparse code on a one-row map prefetches
        (``schedules.sparse_cpu.config.SpecializedConvConfig.prefetch_tiles``): its tiles read a
        vector of every kept channel, as many streams as channels; 0: none.
    table_prefetch_bytes : int
        Bytes ahead in its table that the default compact sparse code prefetches
        (``SpecializedConvConfig.prefetch_table_bytes``); 0: none.
    one_row_filter_tiles_outer : bool
        Whether the default compact sparse code on a one-row map (a 1x1 layer's pixels, an im2col
        row) runs each filter tile over all its output tiles before the next
        (``SpecializedConvConfig.filter_tiles_outer``): the tile's table entries stay in L1 and
        its output rows are written in sequence, while the input is read again per filter tile.
    one_row_outer_min_output_bytes : int or None
        Where ``one_row_filter_tiles_outer`` is off, the default compact sparse code on a one-row
        map still runs its filter tiles outside where a task writes at least this many bytes from
        an input within ``l2_bytes`` (an expansion on a large map): each output tile would write a
        line of every filter's row, more streams than the hardware prefetchers follow, which miss
        to memory in a running model. None: never.
    stem_pixels_in_lanes : bool
        Whether dense stems (an image's few channels through a window) run with the pixels in the
        lanes (``schedules.dense.stem.StemConv2dNCHW``) rather than the filters: their reductions
        are short, and the channel-vectorized kernel's transposed write-out costs as much as them.
    pointwise_columns : bool
        Whether the dense pointwise kernel computes the 1x1 layers that panels would serve (at least
        ``panel_min_channels`` input channels and ``panel_min_filters`` filters) by columns
        (``schedules.dense.pointwise_panels.column_tile``): each task copies one tile's whole input column
        into the L1 cache and runs every filter tile over it, the accumulators in registers for the
        whole reduction; panels then serve only the layers columns cannot.
    weight_prefetch_max_pixels : int or None
        Output maps of at most this many pixels get the dense convolutions' prefetch of the next
        filter tile's weights (``schedules.dense.prefetch``); None: no map. The fewer pixels, the
        fewer multiply-adds per weight to hide a weight's load from memory behind.
    row_band_min_input_bytes : int or None
        Dense padded convolutions whose padded input is larger than this and than their weight are
        shared out between the threads by bands of rows, not by filter tiles
        (``schedules.dense.conv2d.row_bands``): each thread then pads and reads its own rows instead
        of reading the rows padded by the other core from that core's cache; None: never.
    filter_vector_pairs : bool
        Whether, with 32 vector registers, a dense convolution's register tile takes two vectors of
        filters where they hold more accumulators than one (``schedules.dense.tiling.channel_block``:
        maps 7 wide, and 1x1 layers in panels on 14x14, whose tiles of 7 pixels then hold 14
        accumulators instead of 7, with two weight loads for 7 broadcast pixels). With 16 registers
        two vectors are taken wherever they hold as many accumulators, whatever this says.
    """

    name: str
    family: str
    measure: str
    provenance: str
    l1_data_bytes: int
    input_slab_bytes: int
    tile_waste: float
    code_budget_default: int
    code_budget_tuning: int
    code_budget_ceiling: int
    parallel_tasks: int
    pixel_blocks: int
    im2col_bytes: int
    strided_im2col_bytes: int
    pattern_max_density: float
    small_map_pixels: int
    small_map_pattern_max_density: float
    block_max_density: float
    min_macs: int
    pattern_3x3_min_pixels: int | None
    panel_pixels: int | None = None
    vector_waste: float | None = None
    panel_accumulator_bytes: int = 128 * KIB
    panel_min_channels: int = 64
    panel_min_filters: int = 1
    panel_min_channels_in_l2: int = 1
    panel_task_multiple: int | None = None
    l2_bytes: int | None = None
    winograd_min_channels: int | None = None
    winograd_max_work: float = 0.6
    pointwise_pixel_vectors: int = 1
    one_row_prefetch_tiles: int = 0
    table_prefetch_bytes: int = 0
    one_row_filter_tiles_outer: bool = False
    one_row_outer_min_output_bytes: int | None = None
    stem_pixels_in_lanes: bool = False
    weight_prefetch_max_pixels: int | None = None
    pointwise_columns: bool = False
    row_band_min_input_bytes: int | None = None
    filter_vector_pairs: bool = False

    def __post_init__(self):
        if self.family not in ("x86", "arm_cpu", "gpu"):
            raise ValueError(f"family must be x86, arm_cpu or gpu, got {self.family!r}")
        if not 0 < self.input_slab_bytes <= self.l1_data_bytes:
            raise ValueError(f"input_slab_bytes must be within the L1 data cache ({self.l1_data_bytes}), "
                             f"got {self.input_slab_bytes}")
        if self.tile_waste < 1.0:
            raise ValueError(f"tile_waste must be >= 1, got {self.tile_waste}")
        if self.vector_waste is not None and self.vector_waste < 1.0:
            raise ValueError(f"vector_waste must be None or >= 1, got {self.vector_waste}")
        if not self.code_budget_default <= self.code_budget_tuning <= self.code_budget_ceiling:
            raise ValueError("code budgets must grow: default <= tuning <= ceiling")
        if self.panel_pixels is not None and self.panel_pixels < 1:
            raise ValueError(f"panel_pixels must be None or at least 1, got {self.panel_pixels}")
        if self.panel_accumulator_bytes < 4:
            raise ValueError(f"panel_accumulator_bytes must hold a float, got {self.panel_accumulator_bytes}")
        for name in ("panel_min_channels", "panel_min_filters", "panel_min_channels_in_l2"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.panel_task_multiple is not None and self.panel_task_multiple < 1:
            raise ValueError(f"panel_task_multiple must be None or at least 1, got {self.panel_task_multiple}")
        for name in ("l2_bytes", "row_band_min_input_bytes", "one_row_outer_min_output_bytes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be None or at least 1, got {getattr(self, name)}")
        if self.winograd_min_channels is not None and self.winograd_min_channels < 1:
            raise ValueError(f"winograd_min_channels must be None or at least 1, got {self.winograd_min_channels}")
        if self.pointwise_pixel_vectors < 1:
            raise ValueError(f"pointwise_pixel_vectors must be at least 1, got {self.pointwise_pixel_vectors}")
        for name in ("one_row_prefetch_tiles", "table_prefetch_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.winograd_max_work <= 0:
            raise ValueError(f"winograd_max_work must be positive, got {self.winograd_max_work}")

    def exceeds_tile_waste(self, extent, tile):
        """Whether whole tiles of ``tile`` elements cover ``extent`` with more than ``tile_waste`` computed per valid element."""
        return _exceeds_waste(extent, tile, self.tile_waste)

    def exceeds_vector_waste(self, extent, lanes):
        """Whether whole vectors of ``lanes`` cover ``extent`` with more than ``vector_waste`` (or
        ``tile_waste``) computed per valid element."""
        return _exceeds_waste(extent, lanes, self.tile_waste if self.vector_waste is None else self.vector_waste)

    def derived(self, name, family, provenance, **facts):
        """A profile for another target that copies this one's numbers except ``facts``."""
        return dataclasses.replace(self, name=name, family=family, provenance=provenance, **facts)


def _exceeds_waste(extent, size, waste):
    """Whether whole pieces of ``size`` elements cover ``extent`` with more than ``waste`` computed per valid element."""
    return math.ceil(extent / size) * size > waste * extent


#: ``llvm -mcpu=rocketlake`` (AVX-512, 48 KiB L1d): where the numbers were fitted, on 2-core VMs whose
#: CPU LLVM names Rocket Lake (Intel Core 11th gen); the latest of them, a Xeon core with 2 MiB of L2
#: per core, fitted the panels.
ROCKET_LAKE = TargetProfile(
    name="rocketlake",
    family="x86",
    measure="tvm-sparse bench kernels --layer L --density D1 D2 D3 --threads 1 2 (docs/sparse-kernels.md); "
    "panels and pixel vectors: single 1x1 layers and the dense ImageNet models with and without them; "
    "prefetches, vector waste and the one-row filter order: the pruned ResNet-50 with and without them; "
    "stem_pixels_in_lanes: the stems of ResNet-50 and the MobileNets alone and ResNet-50 with and without it; "
    "weight_prefetch_max_pixels: the dense ImageNet models and ResNet-18 with limits of 49 to 3136 pixels and "
    "without; pointwise_columns: single 1x1 layers of ResNet-50 and the dense ImageNet models with and without "
    "them; row_band_min_input_bytes: single 3x3 layers of ResNet-18 and ResNet-50 and ResNet-50 with and without "
    "bands; pattern_3x3_min_pixels: tvm-sparse bench mapping --threads 1 2 (the latency tables of ResNet-18 and "
    "ResNet-50) (docs/performance.md)",
    provenance="measured on a 2-core Rocket Lake (1 and 2 threads); panel_pixels, panel_min_filters, "
    "panel_min_channels_in_l2, panel_task_multiple, pointwise_pixel_vectors, one_row_prefetch_tiles, "
    "table_prefetch_bytes, one_row_filter_tiles_outer, vector_waste, stem_pixels_in_lanes, "
    "weight_prefetch_max_pixels, pointwise_columns, row_band_min_input_bytes and pattern_3x3_min_pixels "
    "(block-punched faster than pattern at equal density on every 3x3 layer) measured on a 2-core Xeon VM that "
    "LLVM names Rocket Lake, "
    "l2_bytes read there (lscpu: 2 MiB per core)",
    l1_data_bytes=48 * KIB,
    input_slab_bytes=32 * KIB,
    tile_waste=1.15,
    code_budget_default=4_000,
    code_budget_tuning=12_000,
    code_budget_ceiling=40_000,
    parallel_tasks=4,
    pixel_blocks=2,
    im2col_bytes=1 * KIB * KIB,
    strided_im2col_bytes=512 * KIB,
    pattern_max_density=0.34,
    small_map_pixels=16,
    small_map_pattern_max_density=0.25,
    block_max_density=0.6,
    min_macs=100_000,
    pattern_3x3_min_pixels=None,
    panel_pixels=128,
    panel_min_filters=64,
    panel_min_channels_in_l2=256,
    panel_task_multiple=2,
    l2_bytes=2 * KIB * KIB,
    pointwise_pixel_vectors=2,
    one_row_prefetch_tiles=1,
    table_prefetch_bytes=1024,
    one_row_filter_tiles_outer=True,
    vector_waste=1.35,
    stem_pixels_in_lanes=True,
    weight_prefetch_max_pixels=784,
    pointwise_columns=True,
    row_band_min_input_bytes=1 * KIB * KIB,
)

#: Rocket Lake's numbers fitted on the Xeon VM, reset in the profiles copied from it that were not measured on
#: such a core (to the defaults, and to patterns for 3x3 layers on maps above 16 pixels, as the first Rocket Lake
#: had them); ``XEON_FITS`` names them in those profiles' provenance.
XEON_FITS = ("panels, columns, pixel vectors, prefetches, one-row filter order, vector waste, stems, row bands, "
             "no 3x3 patterns")
WITHOUT_XEON_FITS = {"panel_pixels": None, "l2_bytes": None, "pointwise_pixel_vectors": 1, "one_row_prefetch_tiles": 0,
                     "table_prefetch_bytes": 0, "one_row_filter_tiles_outer": False, "vector_waste": None,
                     "stem_pixels_in_lanes": False,
                     "weight_prefetch_max_pixels": None, "pointwise_columns": False, "row_band_min_input_bytes": None,
                     "pattern_3x3_min_pixels": 16}

#: ``llvm -mcpu=znver5`` (AMD Zen 5, AVX-512 on 512-bit units, 48 KiB L1d, 1 MiB L2), where the input layouts
#: were chosen.
ZEN5 = ROCKET_LAKE.derived(
    "znver5", "x86", "the Xeon fits (panels, columns, pixel vectors, prefetches, one-row filter order, vector "
    "waste, stems, row bands) measured as a whole (the dense and pruned ImageNet models with and without them, 1 "
    "and 2 threads, on a 2-core Zen 5 VM); pattern_3x3_min_pixels measured (tvm-sparse bench mapping: the latency "
    "table of ResNet-18, block-punched 8x4 as fast as or faster than pattern at equal density on every 3x3 layer); "
    "filter_vector_pairs measured (single layers into 7x7 maps and 1x1 layers on 14x14 maps, and the dense "
    "ImageNet models, with and without it); "
    "l2_bytes read there (lscpu: 1 MiB per core); the input-layout rules, which hold no numbers, chosen on a "
    "2-core Zen 5; the rest copied from Rocket Lake (docs/performance.md)",
    measure="tvm-sparse bench models and bench model (the Xeon fits: the dense and pruned ImageNet models compiled "
    "with and without them and timed in one process; filter_vector_pairs alike); tvm-sparse bench mapping --threads 1 2 "
    "(pattern_3x3_min_pixels); the rest as Rocket Lake's",
    l2_bytes=1 * KIB * KIB, filter_vector_pairs=True,
)

#: ``llvm -mcpu=emeraldrapids`` (Intel Xeon 5th gen, AVX-512, 48 KiB L1d).
EMERALD_RAPIDS = ROCKET_LAKE.derived(
    "emeraldrapids", "x86", "pattern_3x3_min_pixels measured (tvm-sparse bench mapping: the latency table of "
    f"ResNet-18); the rest copied from Rocket Lake, its Xeon fits ({XEON_FITS}) too: a Xeon core with the same "
    "48 KiB L1d and 2 MiB L2",
    measure="tvm-sparse bench mapping --threads 1 2 (pattern_3x3_min_pixels); the rest as Rocket Lake's",
    pattern_3x3_min_pixels=None,
)

#: ``llvm -mcpu=znver4`` (AMD Zen 4, AVX-512 on 256-bit units, 32 KiB L1d).
ZEN4 = ROCKET_LAKE.derived(
    "znver4", "x86", "pattern_3x3_min_pixels measured (tvm-sparse bench mapping: the latency table of ResNet-18, "
    "block-punched 8x4 faster than pattern at equal density on every 3x3 layer); the rest copied from Rocket Lake, "
    f"without its Xeon fits ({XEON_FITS})",
    measure="tvm-sparse bench mapping --threads 1 2 (pattern_3x3_min_pixels); the rest as Rocket Lake's",
    **WITHOUT_XEON_FITS | {"l1_data_bytes": 32 * KIB, "pattern_3x3_min_pixels": None},
)

#: ``llvm -mcpu=znver3`` (AMD Zen 3, AVX2 and 16 vector registers, 32 KiB L1d, 512 KiB L2).
ZEN3 = ROCKET_LAKE.derived(
    "znver3", "x86", "panel_pixels, panel_accumulator_bytes, panel_min_channels, panel_min_filters, "
    "panel_min_channels_in_l2 and panel_task_multiple measured (tvm-sparse compile resnet50 --profile and single 1x1 layers of ResNet-50 "
    "and MobileNetV2 (224), with and without panels); winograd_min_channels and winograd_max_work measured (single "
    "3x3 layers of ResNet-18 (CIFAR) and ResNet-50, Winograd against direct); pattern_3x3_min_pixels measured (tvm-sparse bench mapping: the "
    "latency table of ResNet-50 at 2 threads, block-punched faster than pattern at equal density on every 3x3 "
    "layer); parallel_tasks measured (the pruned models' libraries with 2 and 4 tasks per sparse layer, timed "
    "in one process at 1 and 2 threads on the 2-vCPU VM); one_row_outer_min_output_bytes measured (single pruned 1x1 "
    "layers of ResNet-50 and the pruned ResNet-50 with and without the filter tiles outside, 1 and 2 threads); the rest "
    "copied from Rocket Lake (docs/performance.md)",
    measure="tvm-sparse compile resnet50 --profile (panels, Winograd); tvm-sparse bench mapping --model resnet50 "
    "(pattern_3x3_min_pixels); tvm-sparse bench model (parallel_tasks); the rest as Rocket Lake's",
    **WITHOUT_XEON_FITS | {
        "l1_data_bytes": 32 * KIB, "l2_bytes": 512 * KIB, "pattern_3x3_min_pixels": None, "panel_pixels": 128,
        "panel_min_filters": 64, "panel_min_channels_in_l2": 128, "panel_task_multiple": 2,
        "winograd_min_channels": 32, "parallel_tasks": 2, "one_row_outer_min_output_bytes": 1 * KIB * KIB,
    },
)

#: An x86 CPU without a profile of its own (``llvm`` with another or no ``-mcpu``).
GENERIC_X86 = ROCKET_LAKE.derived(
    "generic x86", "x86", f"not measured; copied from Rocket Lake, without its Xeon fits ({XEON_FITS})",
    l1_data_bytes=32 * KIB, **WITHOUT_XEON_FITS,
)

#: ``llvm -mtriple=aarch64-... -mcpu=cortex-a76`` (64 KiB L1d); also an AArch64 CPU without ``-mcpu``.
CORTEX_A76 = ROCKET_LAKE.derived(
    "cortex-a76", "arm_cpu", f"not measured; copied from Rocket Lake, without its Xeon fits ({XEON_FITS})",
    l1_data_bytes=64 * KIB, **WITHOUT_XEON_FITS,
)

#: ``-mcpu=cortex-a55`` (the little core of most phones; 32 KiB L1d as built by most SoCs).
CORTEX_A55 = ROCKET_LAKE.derived(
    "cortex-a55", "arm_cpu", f"not measured; copied from Rocket Lake, without its Xeon fits ({XEON_FITS})",
    l1_data_bytes=32 * KIB, **WITHOUT_XEON_FITS,
)

#: ``opencl -device=mali`` (also an OpenCL device without a profile of its own). The CPU-kernel
#: numbers do not apply; only the density thresholds are read.
MALI = ROCKET_LAKE.derived(
    "mali", "gpu", "not measured; copied from Rocket Lake (CPU kernels' thresholds)",
    **WITHOUT_XEON_FITS,
    measure="tvm-sparse bench kernels --density ... on the device, once it can run the OpenCL kernels (CPU only today)",
)

#: ``opencl -device=adreno``; as :data:`MALI`.
ADRENO = MALI.derived("adreno", "gpu", "not measured; copied from Rocket Lake (CPU kernels' thresholds)")

#: The profiles by name.
PROFILES = {p.name: p for p in (ROCKET_LAKE, ZEN3, ZEN4, ZEN5, EMERALD_RAPIDS, GENERIC_X86, CORTEX_A76, CORTEX_A55, MALI, ADRENO)}

_CPU_PROFILES = {p.name: p for p in (ROCKET_LAKE, ZEN3, ZEN4, ZEN5, EMERALD_RAPIDS, CORTEX_A76, CORTEX_A55)}
_GPU_PROFILES = {"mali": MALI, "adreno": ADRENO}


def profile_for(target):
    """The profile of ``target`` (a ``tvm.target.Target``, a dict or None: this host).

    OpenCL targets are chosen by ``device`` (Mali by default), CPUs by ``mcpu``; a CPU without a
    profile of its own gets :data:`GENERIC_X86` or, on ARM, :data:`CORTEX_A76`.
    """
    from .target_info import as_target, target_family  # pylint: disable=import-outside-toplevel

    target = as_target(target)
    family = target_family(target)
    if family == "gpu":
        return _GPU_PROFILES.get(str(target.attrs.get("device", "")), MALI)
    profile = _CPU_PROFILES.get(str(target.attrs.get("mcpu", "")))
    if profile is not None and profile.family == family:
        return profile
    return CORTEX_A76 if family == "arm_cpu" else GENERIC_X86
