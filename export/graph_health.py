"""Graph health of a .tflite file: op counts, XNNPACK partitions, and the ops left outside them.

LiteRT replaces each run of ops that XNNPACK takes with one DELEGATE node (a partition). Every
op outside a partition runs on LiteRT's reference kernels, and each switch between the two costs
a copy. A healthy CPU graph is one partition with nothing outside it.

Which ops a partition holds is not exposed, so it is recovered from the tensors: walking back
from a DELEGATE node's outputs to its inputs passes through exactly the ops it replaced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Why an op falls outside XNNPACK, where the cause is known.
KNOWN_CAUSES = {
    "TILE": "Keras 3 lowers UpSampling2D(interpolation='nearest') to RESHAPE + TILE; the export "
            "rewrites UpSampling2D by default (--no-rewrite turns that off)",
    "RESHAPE": "RESHAPE between TILE ops comes from UpSampling2D's nearest lowering (see TILE)",
    "RELU": "an int8 ReLU that cannot fuse into the op before it (its input feeds another branch); "
            "the export rewrites it by default",
    "SOFTMAX": "XNNPACK has no int8 SOFTMAX; a final softmax runs after the last partition, "
               "with no switch back",
}


@dataclass
class GraphHealth:
    """op_counts: every op of the model by type; outside_delegate: those XNNPACK did not take.

    by_design: of those, the ones a part of the graph was built with on purpose, with why
    (the portable variant's integer order statistics); they are shown, not counted as problems.
    """

    op_counts: dict[str, int]
    partitions: int
    outside_delegate: dict[str, int] = field(default_factory=dict)
    by_design: dict[str, int] = field(default_factory=dict)
    by_design_reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.partitions <= 1 + bool(self.by_design) and not self.unexplained()

    def unexplained(self) -> dict[str, int]:
        left = Counter(self.outside_delegate)
        left.subtract(self.by_design)
        return {op: count for op, count in left.items() if count > 0}

    def problems(self) -> list[str]:
        """One line per op type outside the delegate and not there by design, with its cause when known."""
        lines = []
        for op, count in sorted(self.unexplained().items(), key=lambda item: -item[1]):
            cause = KNOWN_CAUSES.get(op, "XNNPACK has no kernel for this op with these types or options")
            lines.append(f"{count} {op} outside XNNPACK: {cause}")
        return lines

    def with_part_by_design(self, part: GraphHealth, reason: str) -> GraphHealth:
        """This graph; what `part` (a piece of it, checked alone) leaves outside XNNPACK is by design."""
        return GraphHealth(self.op_counts, self.partitions, self.outside_delegate,
                           dict(part.outside_delegate), reason)

    def to_dict(self) -> dict:
        return {**asdict(self), "healthy": self.healthy, "problems": self.problems()}


def graph_health(model: str | Path | bytes) -> GraphHealth:
    """Op counts, partitions and ops outside XNNPACK of a .tflite file (or its bytes), as LiteRT loads it."""
    from unet.runtime.backends import interpreter_class

    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interpreter = interpreter_class()(**source, num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()  # the only view of the graph after delegation
    delegates = [node for node in nodes if node["op_name"] == "DELEGATE"]
    originals = {node["index"]: node for node in nodes if node["op_name"] != "DELEGATE"}
    produced_by = {tensor: index for index, node in originals.items() for tensor in node["outputs"]}
    inside: set[int] = set()
    for delegate in delegates:
        boundary = set(delegate["inputs"])
        pending = list(delegate["outputs"])
        while pending:
            tensor = pending.pop()
            index = produced_by.get(tensor)
            if tensor in boundary or index is None or index in inside:
                continue
            inside.add(index)
            pending.extend(originals[index]["inputs"])
    op_counts = Counter(node["op_name"] for node in originals.values())
    outside = Counter(node["op_name"] for index, node in originals.items() if index not in inside)
    if not delegates:
        outside = op_counts
    return GraphHealth(dict(op_counts.most_common()), len(delegates), dict(outside.most_common()))
