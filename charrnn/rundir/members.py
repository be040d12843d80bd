"""What the members of a run's weight files may be (the rules that npzsafe reads them by)."""

import math
import re

from charrnn import cells
from charrnn.checks import short
from charrnn.rundir.layout import CHECKPOINT

# The JSON state member is a few hundred characters; this is far above it.
STATE_MAX_CHARS = 1 << 16
WEIGHTS = "weights/"
OPTIMIZER = "optimizer/"
# The checkpoint's seed generators (model.seed_states): each a (2,) integer state; a model has a
# few per layer (its dropout and its cell's), far fewer than this per layer.
SEEDS_PER_LAYER = 8


class Unfit(Exception):
    """A member whose shape or size does not fit what the run's settings imply."""


class NpzRules:
    """The members of the run's .npz file `name`, as the settings and charrnn/cells.py imply:
    weights of exactly their shapes; in the checkpoint, the optimizer's variables (Adam: a few
    scalars, then moments shaped like the weights), the carried state (at most batch_size x
    layers x states per layer x units numbers) and the seed generators' states (a few pairs of
    integers per layer); and the state, a short JSON string. Without
    settings, the arrays' shapes are not checked."""

    def __init__(self, name, settings):
        self.name = name
        self.settings = settings
        self.shapes = {} if settings is None else cells.weight_shapes(settings.model)
        self.shape_set = set(self.shapes.values())
        self.largest = max((math.prod(shape) for shape in self.shapes.values()), default=0)
        self.optimizer_max = 8 + 3 * len(self.shapes)
        self.carry_max = 0 if settings is None else settings.train.batch_size * cells.state_size(settings.model)
        self.seeds_max = 0 if settings is None else SEEDS_PER_LAYER * (settings.model.layers + 1)

    def kind(self, key):
        """(what member `key` is, the most bytes of data it may hold, None if unchecked).
        ValueError for a member the run does not define."""
        if key == "state":
            return "state", 4 * STATE_MAX_CHARS
        if self.settings is None and (key.startswith((WEIGHTS, OPTIMIZER)) or key in ("carry", "seeds")):
            return "unchecked", None
        if key.startswith(WEIGHTS) and key[len(WEIGHTS) :] in self.shapes:
            return "weight", 8 * math.prod(self.shapes[key[len(WEIGHTS) :]])
        if self.name == CHECKPOINT:
            if key == "carry":
                return "carry", 8 * self.carry_max
            if key == "seeds":
                return "seeds", 8 * 2 * self.seeds_max
            if re.fullmatch(r"optimizer/\d{4,}", key) and int(key[len(OPTIMIZER) :]) < self.optimizer_max:
                return "optimizer", 8 * self.largest
        raise ValueError(f"it holds {short(key)}, which is not part of a run's {self.name}")

    def oversized(self, key, what, declared, limit):
        if what == "state":
            return ValueError(f"its state declares {declared:,} bytes, far more than charrnn writes")
        return Unfit(f"{key} declares {declared:,} bytes, more than the settings allow ({limit:,})")

    def check_keys(self, keys):
        optimizer = sorted(int(k[len(OPTIMIZER) :]) for k in keys if k.startswith(OPTIMIZER))
        if optimizer != list(range(len(optimizer))):
            raise ValueError("its optimizer variables are not numbered 0, 1, 2, ...")

    def check_header(self, key, what, shape, dtype):
        if what == "state":
            if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * STATE_MAX_CHARS:
                raise ValueError("its state is not a short string")
            return
        if dtype.kind not in "fiu" or dtype.itemsize > 8 or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"{key} is not a numeric array")
        if what == "weight":
            expected = self.shapes[key[len(WEIGHTS) :]]
            if shape != expected:
                raise Unfit(f"{key[len(WEIGHTS) :]} has shape {shape}, the settings imply {expected}")
        elif what == "optimizer" and shape != () and shape not in self.shape_set:
            raise Unfit(f"{key} has shape {shape}, which is neither a scalar nor the shape of a weight")
        elif what == "carry" and (len(shape) != 3 or math.prod(shape) > self.carry_max):
            model = self.settings.model
            expected = (self.settings.train.batch_size, cells.state_size(model) // model.units, model.units)
            raise Unfit(f"carry has shape {shape}, the settings imply at most {expected}")
        elif what == "seeds" and (dtype.kind not in "iu" or len(shape) != 2 or shape[1] != 2 or shape[0] > self.seeds_max):
            raise Unfit(f"seeds has shape {shape} of {dtype}, not at most {self.seeds_max} pairs of integers")
