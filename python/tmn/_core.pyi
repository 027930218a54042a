"""Typed stub for tmn._core, the C++ engine. tests/unit/test_stub.py keeps it in sync."""

from typing import Any

import numpy as np
import numpy.typing as npt

class _Enum:
    """What every pybind11 enum below has."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Status(_Enum):
    """Error codes of the tick path (append-only)."""

    ok: Status
    non_finite: Status
    time_not_increasing: Status
    capacity_exceeded: Status
    unknown_stream: Status
    out_of_range: Status
    non_finite_output: Status

class Verdict(_Enum):
    """What the gate decided for a prediction."""

    pass_: Verdict
    fallback_implausible: Verdict
    fallback_uncertified: Verdict
    warming: Verdict
    ungated: Verdict

class FrameError(_Enum):
    """Frame-level error codes of the wire protocol."""

    bad_magic: FrameError
    bad_version: FrameError
    bad_kind: FrameError
    bad_size: FrameError
    batch_too_large: FrameError
    empty_batch: FrameError
    bad_json: FrameError
    bad_request: FrameError
    unknown_command: FrameError
    bad_envelope: FrameError
    internal: FrameError
    overloaded: FrameError
    bad_query: FrameError

class FrameKind(_Enum):
    """What a binary frame carries."""

    ticks: FrameKind
    predictions: FrameKind
    error: FrameKind
    position_ticks: FrameKind
    point_ticks: FrameKind
    point_position_ticks: FrameKind
    points: FrameKind

class Isa(_Enum):
    """Instruction set of the GRU kernels."""

    scalar: Isa
    avx2: Isa
    avx512: Isa

class Timing(_Enum):
    """What a tick times (engine.hpp)."""

    all: Timing
    sampled: Timing
    off: Timing

class System(_Enum):
    A: System
    B: System

class Precision(_Enum):
    fp32: Precision
    int8: Precision

# Constants defined in C++ (bind_constants.cpp says where each one lives).
STAGES: tuple[str, ...]
TIMING_SAMPLE_PERIOD: int
FEATURES: dict[str, tuple[str, ...]]
MAX_VELOCITY_WINDOW: int
MAX_GRID_STEPS_PER_TICK: int
NO_PREDICTION: int
VERDICT_NAMES: dict[int, str]
PERCENTILES: tuple[tuple[str, float], ...]
MAX_HORIZONS: int
MAX_HIDDEN: int
MAX_LAMBDA: float
MAX_BATCH: int
MAX_JOBS_PER_PEER: int
SEND_HWM: int
SERVER_PHASES: tuple[str, ...]
WIRE_MAGIC: int
WIRE_VERSION: int
DEFAULT_ENDPOINT: str

class TickError(ValueError):
    """A tick (or reset) was refused; ``status`` is the Status code."""

    status: Status

INPUT_SIGMAS: float
MAX_ABS_OUTPUT_UNITS: float
MAX_ABS_TIME_S: float
MAX_HORIZON_S: float
MAX_HORIZONS: int
MIN_GATE_EPS: float
MAX_GATE_EPS: float
MAX_GATE_BUDGET: int
GATE_GUARD_WORK: int
GATE_GUARD_NS: int
MAX_KALMAN_Q: float
MIN_KALMAN_R: float
MAX_KALMAN_R: float

def input_ranges(spec: ModelSpec) -> dict[str, tuple[float, float]]: ...
def bound_as_float(bound: float) -> float: ...

class Histogram:
    def __init__(self, lowest: float, octaves: int, sub: int) -> None: ...
    def record(self, v: float) -> None: ...
    def percentile(self, p: float) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def max(self) -> float: ...
    def bucket_counts(self) -> list[int]: ...

def clock_ns_per_tick() -> float: ...
def isa_available(isa: Isa) -> bool: ...
def best_isa() -> Isa: ...
def clock_uses_tsc() -> bool: ...
def activation(name: str, x: npt.ArrayLike, isa: Isa = ...) -> npt.NDArray[np.float32]: ...
def jacobi_solve(
    indptr: npt.ArrayLike,
    indices: npt.ArrayLike,
    data: npt.ArrayLike,
    b: npt.ArrayLike,
    x0: npt.ArrayLike,
    eps: float,
    budget: int,
    lambda_lb: float | None = None,
    omega: float = 1.0,
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]: ...

class PushGraph:
    """A weighted digraph in CSR for forward-push personalised PageRank."""

    def __init__(
        self, indptr: npt.ArrayLike, indices: npt.ArrayLike, weights: npt.ArrayLike | None = None
    ) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    @property
    def dangling(self) -> int: ...
    def pagerank(
        self,
        restart_nodes: npt.ArrayLike,
        restart_weights: npt.ArrayLike,
        alpha: float,
        eps: float,
        budget: int,
    ) -> dict[str, Any]: ...

class IngestParams:
    @property
    def rate_hz(self) -> float: ...
    @property
    def velocity_window(self) -> int: ...
    @property
    def highpass_s(self) -> float: ...
    def __init__(self, rate_hz: float, velocity_window: int, highpass_s: float) -> None: ...

def resample(
    params: IngestParams, t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike,
    vx: npt.ArrayLike | None = None, vy: npt.ArrayLike | None = None
) -> tuple[npt.NDArray[np.float64], ...]: ...
def grid_features(
    params: IngestParams, system: System, kalman: KalmanParams, t: npt.ArrayLike,
    x: npt.ArrayLike, y: npt.ArrayLike, vx: npt.ArrayLike, vy: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

class KalmanParams:
    q: float
    r_pos: float
    r_vel: float
    def __init__(self, q: float, r_pos: float, r_vel: float) -> None: ...

class KalmanState:
    px: float
    py: float
    vx: float
    vy: float
    p_pp: float
    p_pv: float
    p_vv: float
    def __init__(self) -> None: ...

class KalmanPrior:
    def __init__(self, params: KalmanParams) -> None: ...
    def init(self, t: float, x: float, y: float, vx: float, vy: float) -> KalmanState: ...
    def step(
        self, state: KalmanState, t: float, x: float, y: float, vx: float, vy: float, dt: float
    ) -> None: ...
    def extrapolate(
        self, state: KalmanState, horizons_s: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def filter(
        self, t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, vx: npt.ArrayLike,
        vy: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

class GateParams:
    eps: float
    budget: int
    lam: float
    threshold: float
    blend_s: float
    def __init__(
        self, eps: float, budget: int, lam: float, threshold: float, blend_s: float = 0.0
    ) -> None: ...

class SolverGate:
    def __init__(
        self, params: GateParams, horizons: int, dh: float, guarded: bool = False,
        isa: Isa | None = None
    ) -> None: ...
    @property
    def isa(self) -> Isa: ...
    @property
    def fixed_size(self) -> bool: ...
    def matrix(self) -> npt.NDArray[np.float64]: ...
    def run(
        self,
        delta: npt.ArrayLike,
        prior: npt.ArrayLike,
        inv_var: npt.ArrayLike,
        v: npt.ArrayLike,
    ) -> dict[str, Any]: ...

class ModelSpec:
    system: System
    hidden: int
    horizons_s: list[float]
    ingest: IngestParams
    feature_mean: list[float]
    feature_std: list[float]
    output_scale: list[float]
    window_s: float
    max_gap_s: float
    kalman: KalmanParams
    gate: GateParams
    gate_variance: list[float]
    radius_c0: list[float]
    radius_c1: list[float]
    # w_ih, w_hh, b_ih, b_hh, w_out, b_out, s_ih, s_hh, s_out (float32), q_ih, q_hh, q_out (int8)
    tensors: dict[str, npt.NDArray[Any]]
    def __init__(self) -> None: ...

class Prediction:
    """One tick's answer: an owned record (a later tick never changes it)."""

    @property
    def stream(self) -> int: ...
    @property
    def t(self) -> float: ...
    @property
    def t_grid(self) -> float: ...
    @property
    def blend(self) -> float: ...
    @property
    def h0(self) -> float: ...
    @property
    def dt(self) -> float: ...
    @property
    def origin(self) -> tuple[float, float]: ...
    def at(self, dt: float) -> tuple[float, float]: ...
    def radius_at(self, dt: float) -> float: ...
    @property
    def radius(self) -> npt.NDArray[np.float32]: ...
    @property
    def status(self) -> Status: ...
    @property
    def verdict(self) -> Verdict: ...
    @property
    def restarted(self) -> bool: ...
    @property
    def d2(self) -> float: ...
    @property
    def cert_error(self) -> float: ...
    @property
    def work(self) -> int: ...
    @property
    def total_ns(self) -> int: ...
    @property
    def stages_timed(self) -> bool: ...
    @property
    def stage_ns(self) -> dict[str, int]: ...
    @property
    def path(self) -> npt.NDArray[np.float64]: ...

class Engine:
    def __init__(
        self, spec: ModelSpec, precision: Precision, max_streams: int, isa: Isa,
        timing: Timing = ...
    ) -> None: ...
    def tick(
        self, t: float, x: float, y: float, vx: float | None = None, vy: float | None = None,
        stream: int = 0
    ) -> Prediction: ...
    def tick_many(
        self, t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike,
        vx: npt.ArrayLike | None = None, vy: npt.ArrayLike | None = None,
        stream: npt.ArrayLike | None = None, out: npt.NDArray[Any] | None = None
    ) -> npt.NDArray[Any]: ...
    @property
    def batch_dtype(self) -> np.dtype[Any]: ...
    def reset(self, stream: int) -> None: ...
    def evict_idle(self, idle_s: float) -> int: ...
    def replay(
        self, t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike,
        vx: npt.ArrayLike | None = None, vy: npt.ArrayLike | None = None,
        stream: npt.ArrayLike | None = None, candidates: bool = False
    ) -> dict[str, Any]: ...
    def network_step(
        self, z: npt.ArrayLike, h: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def int8_scratch(self) -> dict[str, Any]: ...
    def time_network_steps(self, n: int) -> tuple[npt.NDArray[np.uint32], float]: ...
    @property
    def horizons(self) -> int: ...
    @property
    def hidden(self) -> int: ...
    @property
    def features(self) -> int: ...
    @property
    def system(self) -> System: ...
    @property
    def precision(self) -> Precision: ...
    @property
    def isa(self) -> Isa: ...
    @property
    def restarts(self) -> int: ...
    timing: Timing
    @property
    def stream_count(self) -> int: ...
    @property
    def max_streams(self) -> int: ...

def allowed_cpus() -> list[int]: ...

class ServerConfig:
    endpoint: str
    pub_endpoint: str
    core: int
    io_core: int
    spin: bool
    rt_priority: int
    lock_memory: bool
    idle_evict_s: float
    score_every_s: float
    echo: bool
    reclaim_idle_s: float
    curve_secret_key: str
    client_keys: list[str]
    max_streams_per_client: int
    def __init__(self) -> None: ...

class Server:
    def __init__(self, engine: Engine, config: ServerConfig) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def running(self) -> bool: ...
    def next_control(self, timeout_s: float) -> tuple[int, bytes, str] | None: ...
    def reply_control(self, token: int, json: bytes) -> None: ...
    def reset_stream(self, stream: int) -> Status: ...
    def swap_engine(self, engine: Engine) -> None: ...
    def scoped_stream(self, client_key: str, stream: int) -> int: ...
    def knows_client(self, client_key: str) -> bool: ...
    def held_streams(self) -> list[tuple[int, str, int]]: ...
    @property
    def bound_endpoint(self) -> str: ...
    @property
    def stream_count(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def stream_accuracy(self, stream: int) -> list[dict[str, Any]]: ...
    def scored_streams(self) -> list[int]: ...
    def warnings(self) -> list[str]: ...

def loops_stats(servers: list[Server]) -> dict[str, Any]: ...
