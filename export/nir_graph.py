"""The topology of a NIR graph: the Input -> Output chain, recurrent synapses, shortcuts.

What converts is one chain ``Input -> ... -> Output`` plus two kinds of side edges, taken out of
the graph before the chain is walked:

- a recurrent ``Affine``/``Linear`` ``R`` on a spiking neuron ``N`` (``N -> R -> N``: NetX
  ``dense_rec``);
- residual shortcuts (#33): a neuron node ``Q`` with two or more inputs sums them (NIR's rule
  for several edges into one node). The input that lies deepest (longest path from ``Input``)
  is the chain; every other one is a shortcut from an earlier spiking neuron node ``P``,
  either straight (``P -> Q``: identity) or through one synapse node (``P -> S -> Q``), as
  nirtorch's tracer writes ``q(conv(x) + x)`` and ``q(conv(x) + sc(x))``.

Every other shape (a sum into a node that is no neuron, a branch of several nodes, cycles,
nodes off the chain) is refused naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from snn2loihi.export.errors import NotDeployableError
from snn2loihi.export.nir_read import NirGraphFile, NirNode

SYNAPSES = ("Affine", "Linear", "Conv2d")
NEURONS = ("IF", "LIF", "CubaLIF", "I", "LI", "CubaLI", "Threshold")
READOUTS = ("I", "LI", "CubaLI")


@dataclass(frozen=True)
class GraphShortcut:
    """A second input of a neuron node: the spikes of neuron node ``source`` through
    ``synapse`` (None: identity) into the neuron node that holds it."""

    source: str
    synapse: NirNode | None


@dataclass
class GraphTopology:
    """The chain from Input to Output (nodes in order) and the side edges onto its neurons."""

    chain: list[NirNode]
    recurrent: dict[str, NirNode]  # neuron name -> its recurrent synapse
    shortcuts: dict[str, list[GraphShortcut]]  # neuron name -> its shortcuts


def _spiking(node: NirNode) -> bool:
    return node.kind in NEURONS and node.kind not in READOUTS


def _recurrent_synapses(g: NirGraphFile, outs, ins) -> dict[str, NirNode]:
    """{neuron name: its recurrent synapse}: an Affine/Linear ``R`` whose only input and only
    output is one spiking neuron node ``N`` (``N -> R -> N``, how snnTorch exports ``RLeaky``
    with ``all_to_all``). The pair's edges are taken out of ``outs``/``ins``."""
    found: dict[str, NirNode] = {}
    for name, node in g.nodes.items():
        if node.kind not in ("Affine", "Linear") or len(ins[name]) != 1 or outs[name] != ins[name]:
            continue
        neuron = ins[name][0]
        if not _spiking(g.nodes[neuron]):
            continue
        if neuron in found:
            raise NotDeployableError(
                f"{g.path}: node '{neuron}' ({g.nodes[neuron].kind}): two recurrent synapses "
                f"('{found[neuron].name}', '{name}'); NetX's dense_rec has one"
            )
        found[neuron] = node
        outs[neuron].remove(name)
        ins[neuron].remove(name)
        outs[name], ins[name] = [], []
    return found


LOST_ADD = (
    "an exporter that loses a residual addition (snnTorch 1.0's export_to_nir, Norse 1.1's "
    "to_nir) leaves the node after it without inputs: trace the network with "
    "nirtorch.torch_to_nir (docs/nir.md)"
)


def _refuse_orphans(g: NirGraphFile, ins, side: set[str]) -> None:
    """Refuses a node other than Input (or a recurrent synapse, ``side``) without inputs."""
    for name, node in g.nodes.items():
        if node.kind != "Input" and not ins[name] and name not in side:
            raise NotDeployableError(
                f"{g.path}: node '{name}' ({node.kind}) has no input edge; {LOST_ADD}"
            )


def _reaches(outs: dict[str, list[str]], src: str, dst: str) -> bool:
    """Whether a path of edges leads from node ``src`` to node ``dst``."""
    stack, seen = [src], {src}
    while stack:
        for nxt in outs[stack.pop()]:
            if nxt == dst:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _reachable(outs: dict[str, list[str]], start: str) -> list[str]:
    """The nodes reachable from ``start`` (itself included), breadth first."""
    order, seen = [start], {start}
    for cur in order:
        for nxt in outs[cur]:
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    return order


def _refuse_cycles(g: NirGraphFile, outs, ins, order: list[str]) -> None:
    """A cycle reachable from Input enters at a node with two inputs (or at Input itself):
    refused naming that node and the edge that closes the loop."""
    for cur in order:
        node = g.nodes[cur]
        if len(ins[cur]) > 1 or (node.kind == "Input" and ins[cur]):
            loops = [i for i in ins[cur] if _reaches(outs, cur, i)]
            if loops:
                raise NotDeployableError(
                    f"{g.path}: node '{cur}' ({node.kind}): recurrent edge into it from "
                    f"'{loops[0]}' (a cycle); only a recurrent Affine/Linear from a spiking "
                    "neuron onto itself converts (NetX dense_rec; docs/nir.md)"
                )


def _depths(ins, order: list[str]) -> dict[str, int]:
    """Longest path (in edges) from Input to each node of ``order`` (acyclic, reachable)."""
    inside = set(order)
    depth: dict[str, int] = {}
    pending = {n: sum(p in inside for p in ins[n]) for n in order}
    ready = [n for n in order if pending[n] == 0]
    outs_in: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for p in ins[n]:
            if p in inside:
                outs_in[p].append(n)
    while ready:
        n = ready.pop()
        depth[n] = max((depth[p] + 1 for p in ins[n] if p in inside), default=0)
        for nxt in outs_in[n]:
            pending[nxt] -= 1
            if pending[nxt] == 0:
                ready.append(nxt)
    return depth


def _shortcut(g: NirGraphFile, target: str, name: str, outs, ins) -> GraphShortcut:
    """The shortcut that input ``name`` of neuron node ``target`` is, or a refusal."""
    node, where = g.nodes[name], f"{g.path}: node '{target}' ({g.nodes[target].kind})"
    if _spiking(node):
        return GraphShortcut(name, None)
    if node.kind in SYNAPSES and len(ins[name]) == 1 and outs[name] == [target]:
        src = g.nodes[ins[name][0]]
        if _spiking(src):
            return GraphShortcut(src.name, node)
        raise NotDeployableError(
            f"{where}: shortcut '{name}' ({node.kind}) reads '{src.name}' ({src.kind}); a "
            "shortcut reads the spikes of an earlier spiking neuron node"
        )
    raise NotDeployableError(
        f"{where}: its input '{name}' ({node.kind}) is no shortcut: a second input into a neuron "
        "node must come from a spiking neuron node, straight (identity) or through one "
        "Conv2d (docs/nir.md)"
    )


def _shortcuts(g: NirGraphFile, outs, ins, order: list[str]) -> dict[str, list[GraphShortcut]]:
    """{neuron name: its shortcuts} of every node with several inputs; their edges are taken
    out of ``outs``/``ins`` so that the chain remains."""
    depth = _depths(ins, order)
    found: dict[str, list[GraphShortcut]] = {}
    for cur in order:
        if len(ins[cur]) < 2:
            continue
        node = g.nodes[cur]
        if node.kind not in NEURONS:
            raise NotDeployableError(
                f"{g.path}: node '{cur}' ({node.kind}): {len(ins[cur])} inputs are summed into "
                f"it ({', '.join(ins[cur])}); a sum converts only into a neuron node (a residual "
                "block's output neurons)"
            )
        outside = [i for i in ins[cur] if i not in depth]
        if outside:
            raise NotDeployableError(
                f"{g.path}: node '{outside[0]}' is not on the Input -> Output chain"
            )
        main = max(ins[cur], key=lambda i: depth[i])  # the first of the deepest
        found[cur] = []
        for name in [i for i in ins[cur] if i != main]:
            sc = _shortcut(g, cur, name, outs, ins)
            found[cur].append(sc)
            if sc.synapse is None:  # the identity edge source -> cur
                outs[name].remove(cur)
            else:  # source -> synapse -> cur
                outs[sc.source].remove(name)
                outs[name], ins[name] = [], []
            ins[cur].remove(name)
    return found


def topology(g: NirGraphFile) -> GraphTopology:
    """The chain of ``g`` with its recurrent synapses and shortcuts; refuses other branches and
    cycles naming the node."""
    outs: dict[str, list[str]] = {n: [] for n in g.nodes}
    ins: dict[str, list[str]] = {n: [] for n in g.nodes}
    for a, b in g.edges:
        outs[a].append(b)
        ins[b].append(a)
    recurrent = _recurrent_synapses(g, outs, ins)
    inputs = [n for n, node in g.nodes.items() if node.kind == "Input"]
    if len(inputs) != 1:
        hint = (
            "; after snnTorch's type inference, an Input node stands for each lost input: "
            + LOST_ADD
            if len(inputs) > 1
            else ""
        )
        raise NotDeployableError(
            f"{g.path}: the graph needs exactly one Input node, has {len(inputs)} Input nodes"
            f"{' (' + ', '.join(repr(n) for n in inputs) + ')' if inputs else ''}{hint}"
        )
    _refuse_orphans(g, ins, {r.name for r in recurrent.values()})
    order = _reachable(outs, inputs[0])
    _refuse_cycles(g, outs, ins, order)
    shortcuts = _shortcuts(g, outs, ins, order)
    chain, seen, cur = [], set(), inputs[0]
    while True:
        node = g.nodes[cur]
        seen.add(cur)
        chain.append(node)
        if ins[cur] and node.kind == "Input":  # pragma: no cover - a cycle, refused above
            raise NotDeployableError(f"{g.path}: node '{cur}': recurrent edge (a cycle)")
        if node.kind == "Output":
            break
        if len(outs[cur]) != 1:
            raise NotDeployableError(
                f"{g.path}: node '{cur}' ({node.kind}) has {len(outs[cur])} outgoing edges; "
                "only a chain Input -> ... -> Output converts, with shortcuts from spiking "
                "neuron nodes into later neuron nodes (docs/nir.md)"
            )
        cur = outs[cur][0]
    side = {r.name for r in recurrent.values()}
    side |= {sc.synapse.name for scs in shortcuts.values() for sc in scs if sc.synapse}
    unused = sorted(set(g.nodes) - seen - side)
    if unused:
        raise NotDeployableError(
            f"{g.path}: node '{unused[0]}' is not on the Input -> Output chain"
        )
    for target, scs in shortcuts.items():
        for sc in scs:
            if sc.source not in seen:
                raise NotDeployableError(
                    f"{g.path}: node '{target}' ({g.nodes[target].kind}): shortcut source "
                    f"'{sc.source}' is not on the Input -> Output chain"
                )
    return GraphTopology(chain, recurrent, shortcuts)
