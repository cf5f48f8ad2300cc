"""The Kamailio switch recipes of config/switches/, run UNCHANGED against real ringback nodes.

Kamailio 5.6 runs `config/switches/kamailio-redirect.cfg` or `kamailio-dip.cfg` as they are
shipped; only their `#!define` deployment values are given on the command line (`-A`): the
loopback listen address, the callee as next hop, a dispatcher list naming the ringback nodes
started here, the dip URL and switch token. Everything else is real: `ringback serve` nodes on
one seeded PostgreSQL database, sipp or linphonec as the caller, sipp as the callee.

The listed number plays a 3.0 s chirp (`court_audio` below): longer than the recipes' 2 s
fr_timer (time to ringback's first reply), so a recipe that let fr_timer bound the warning
would cut it, and the callee would be reached too early.

(c) kamailio-redirect.cfg: linphonec hears the warning, then the callee answers; an unlisted
    number reaches the callee at once; every ringback node stopped -> the call completes
    anyway (each silent node costs one fr_timer once, then the call goes straight on); OPTIONS
    probing takes a dead node out and brings it back; a node dying mid-warning -> the call goes
    on after fr_inv_timer; a node answering 503 -> fail open.
(d) kamailio-dip.cfg: listed -> warning then callee; unlisted -> callee directly and ringback's
    SIP side never sees the INVITE (its own counter says 0); ringback's HTTP stopped, hanging
    or refusing the token -> callee directly, unwarned.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from harness import (
    LOCALHOST,
    SWITCH_RECIPES,
    KamailioProcess,
    MissingBinary,
    PeerFailed,
    ProcessSet,
    RingbackCluster,
    RingbackNode,
    RtpReceiver,
    SippResult,
    SippServer,
    TraceMessage,
    check_kamailio_cfg,
    free_port,
    kamailio_string,
    match_reference,
    read_wav,
    require_kamailio_modules,
    resample_to_8k,
    rtp_audio,
    rtp_stream_problems,
    start_switch_recipe,
    wait_for_log,
    write_dispatcher_list,
)
from test_softphones import linphonec_call

pytestmark = pytest.mark.interop

WARNING_S = 3.0
RINGBACK_FR_S = 2.0  # the recipes' default RINGBACK_FR_MS
DIP_TIMEOUT_S = 1.0  # kamailio-dip.cfg's default DIP_TIMEOUT_S

Uac = Callable[..., SippResult]
StartRecipe = Callable[..., KamailioProcess]


@pytest.fixture
def court_audio() -> bytes:
    """The court's recording for this module: a 3.0 s rising chirp."""
    t = np.arange(int(8000 * WARNING_S)) / 8000
    return (0.4 * np.sin(2 * np.pi * (400 + 400 * t) * t) * 32767).astype("<i2").tobytes()


@pytest.fixture
def recipe(processes: ProcessSet, interop_dir: Path) -> StartRecipe:
    """`recipe(name, dispatcher=[nodes], callee=SippServer, **defines)`: Kamailio running
    config/switches/<name> unchanged, on a free loopback port, with NEXT_HOP = the callee and
    DISPATCHER_LIST = a list file naming `dispatcher` (a RingbackNode or "host:port")."""

    def start(
        name: str,
        *,
        dispatcher: list[RingbackNode | str],
        callee: SippServer,
        **defines: str | int,
    ) -> KamailioProcess:
        ds_list = interop_dir / f"dispatcher-{free_port('udp')}.list"
        nodes = [n for n in dispatcher if isinstance(n, RingbackNode)]
        others = [f"1 sip:{n} 0 0 duid=stand-in" for n in dispatcher if isinstance(n, str)]
        write_dispatcher_list(ds_list, nodes)
        if others:
            with open(ds_list, "a") as f:
                f.write("\n".join(others) + "\n")
        values: dict[str, str | int] = {
            "NEXT_HOP": kamailio_string(f"sip:{callee.addr}"),
            "DISPATCHER_LIST": kamailio_string(str(ds_list)),
            "PING_FROM": kamailio_string("sip:ringback-probe@127.0.0.1"),
            **defines,
        }
        try:
            return start_switch_recipe(processes, name, workdir=interop_dir, defines=values)
        except (PeerFailed, MissingBinary) as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)

    return start


def dip_defines(node: RingbackNode | str, token: str) -> dict[str, str | int]:
    base = node.http_url if isinstance(node, RingbackNode) else node
    return {
        "DIP_URL": kamailio_string(f"{base}/v1/lookup/"),
        "DIP_TOKEN": kamailio_string(token),
    }


# --------------------------------------------------------------------------- helpers


def received(result: SippResult, status: int) -> list[TraceMessage]:
    return [m for m in result.messages if m.direction == "received" and m.status == status]


def invite_answered(result: SippResult) -> TraceMessage:
    (answer,) = [m for m in received(result, 200) if m.method == "INVITE"]
    return answer


def setup_seconds(result: SippResult) -> float:
    """From the caller's first INVITE to the callee's 200, in the caller's own trace."""
    invite = next(m for m in result.messages if m.direction == "sent" and m.method == "INVITE")
    return (invite_answered(result).time - invite.time).total_seconds()


def requests_in(server: SippServer, method: str | None = None) -> list[TraceMessage]:
    return [
        m
        for m in server.messages
        if m.direction == "received" and not m.is_response and method in (None, m.method)
    ]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}", pytrace=False)
        time.sleep(0.05)


def invites(nodes: list[RingbackNode]) -> list[int]:
    return [node.sip_requests("INVITE") for node in nodes]


def in_log(switch: KamailioProcess, pattern: str, timeout: float = 5.0) -> None:
    try:
        wait_for_log(switch.process, pattern, timeout)
    except PeerFailed as exc:
        pytest.fail(str(exc), pytrace=False)


def target(number: str, switch: KamailioProcess, *, marked: bool) -> str:
    """The Request-URI the callee must see: the caller's, loop-marked or not."""
    return f"sip:{number}@{switch.host}:{switch.port}" + (";rbk" if marked else "")


def assert_heard(samples: np.ndarray, reference: np.ndarray, what: str) -> None:
    heard = match_reference(samples, reference)
    detail = f"{what}: {heard.describe()}"
    assert heard.correlation > 0.8 and heard.matched_fraction > 0.9, detail
    assert abs(heard.chirp_seconds - WARNING_S) <= 0.1, detail


# --------------------------------------------------------------------------- as shipped


@pytest.mark.parametrize(
    "name", ["kamailio-redirect.cfg", "kamailio-dip.cfg", "kamailio-ringback.cfg"]
)
def test_recipe_as_shipped_passes_kamailio_check(name: str) -> None:
    """`kamailio -c` on the file with nothing but its own defaults (the dip's token comes from
    the environment in production; here as a define)."""
    defines = {"DIP_TOKEN": kamailio_string("rbk_example")} if "dip" in name else {}
    try:
        require_kamailio_modules(SWITCH_RECIPES / name)
        check_kamailio_cfg(SWITCH_RECIPES / name, defines=defines)
    except (PeerFailed, MissingBinary) as exc:
        pytest.fail(str(exc), pytrace=False)


def test_redirect_recipe_loads_the_example_dispatcher_list(
    processes: ProcessSet, interop_dir: Path, sipp_uas: Callable[..., SippServer]
) -> None:
    """config/switches/dispatcher.list as shipped loads (no probe is sent in this test: the
    first would be due in an hour, and no call is made)."""
    callee = sipp_uas("uas_answer_any")
    switch = start_switch_recipe(
        processes,
        "kamailio-redirect.cfg",
        workdir=interop_dir,
        defines={
            "NEXT_HOP": kamailio_string(f"sip:{callee.addr}"),
            "DISPATCHER_LIST": kamailio_string(str(SWITCH_RECIPES / "dispatcher.list")),
            "DS_PING_INTERVAL": 3600,
        },
    )
    time.sleep(0.5)
    assert switch.process.alive(), switch.log()
    assert "ERROR" not in switch.log(), switch.log()


# --------------------------------------------------------------------------- (c) redirect


def test_redirect_recipe_linphonec_hears_the_warning_then_the_callee_answers(
    linphonec_binary: str,
    processes: ProcessSet,
    interop_dir: Path,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
    court_reference: np.ndarray,
) -> None:
    nodes = [ringback_cluster.start("ringback-a"), ringback_cluster.start("ringback-b")]
    callee = sipp_uas("uas_answer")  # insists on the ;rbk loop marker
    switch = recipe(
        "kamailio-redirect.cfg", dispatcher=list(nodes), callee=callee, DS_PING_INTERVAL=1
    )
    # the dispatcher probes every node with OPTIONS, and ringback answers them
    wait_until(
        lambda: all(node.sip_requests("OPTIONS") >= 1 for node in nodes),
        5,
        "an OPTIONS probe on every ringback node",
    )

    number = ringback_cluster.listed
    call = linphonec_call(
        linphonec_binary,
        processes,
        interop_dir,
        f"sip:{number}@{switch.host}:{switch.port}",
        early_media=True,
    )

    # linphonec heard the court's recording, all of it (fr_timer did not cut it at 2 s)
    assert call.recording.exists(), f"linphonec recorded nothing\n{call.log[-3000:]}"
    samples, rate = read_wav(call.recording)
    assert_heard(resample_to_8k(samples, rate), court_reference, f"linphonec ({rate} Hz)")

    # one node played it; then the switch followed its 302 to the callee, after the warning
    assert sorted(invites(nodes)) == [0, 1], invites(nodes)
    got = requests_in(callee)
    assert [m.method for m in got] == ["INVITE", "ACK", "BYE"], got
    assert got[0].request_uri == target(number, switch, marked=True)
    after = got[0].time.timestamp() - call.dialled_at
    assert WARNING_S <= after <= WARNING_S + 1.5, f"callee reached {after:.2f} s after dialling"
    in_log(switch, rf"ringback 302 \(played\): \{number} -> next hop")


def test_redirect_recipe_unlisted_number_reaches_the_callee_at_once(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
) -> None:
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer")
    switch = recipe("kamailio-redirect.cfg", dispatcher=[node], callee=callee)
    number = ringback_cluster.unlisted

    result = uac("uac_call_through_switch", (switch.host, switch.port), service=number)
    result.assert_all_ok(1)

    assert not received(result, 183) and not received(result, 302)
    assert setup_seconds(result) < 0.5, result.describe()
    assert node.sip_requests("INVITE") == 1, "ringback decided (302 at once)"
    (invite,) = requests_in(callee, "INVITE")
    assert invite.request_uri == target(number, switch, marked=True)


def test_redirect_recipe_completes_calls_with_every_ringback_node_stopped(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
) -> None:
    nodes = [ringback_cluster.start("ringback-a"), ringback_cluster.start("ringback-b")]
    callee = sipp_uas("uas_answer_any")
    # probing out of the way (first probe in an hour): the recipe's own timers are under test
    switch = recipe(
        "kamailio-redirect.cfg", dispatcher=list(nodes), callee=callee, DS_PING_INTERVAL=3600
    )
    for node in nodes:
        node.process.stop()
    number = ringback_cluster.listed
    timeout = 2 * RINGBACK_FR_S + 10

    # first call: each node is tried once (RINGBACK_TRIES=2), stays silent for fr_timer and is
    # marked down; then the call goes straight on, unwarned and unmarked
    first = uac(
        "uac_call_through_switch", (switch.host, switch.port), service=number, timeout=timeout
    )
    first.assert_all_ok(1)
    took = setup_seconds(first)
    assert 2 * RINGBACK_FR_S - 0.1 <= took <= 2 * RINGBACK_FR_S + 1.0, first.describe()
    in_log(switch, r"ringback gave 408 for .*: fail open")

    # second call: both nodes are marked down, so nobody waits for them any more
    second = uac(
        "uac_call_through_switch", (switch.host, switch.port), service=number, timeout=timeout
    )
    second.assert_all_ok(1)
    assert setup_seconds(second) < 0.5, second.describe()
    in_log(switch, r"no ringback node active: .* goes straight on \(fail open\)")

    got = requests_in(callee, "INVITE")
    assert [m.request_uri for m in got] == [target(number, switch, marked=False)] * 2


def test_redirect_recipe_probing_takes_a_dead_node_out_and_back_in(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
    court_reference: np.ndarray,
) -> None:
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer_any")
    switch = recipe("kamailio-redirect.cfg", dispatcher=[node], callee=callee, DS_PING_INTERVAL=1)
    number = ringback_cluster.listed
    node.process.stop()
    # two failed probes (DS_PROBING_THRESHOLD), one a second, each given up after fr_timer
    in_log(switch, rf"ringback node {node.sip_uri} down", timeout=10)

    down = uac("uac_call_through_switch", (switch.host, switch.port), service=number)
    down.assert_all_ok(1)
    assert setup_seconds(down) < 0.5, "a node known to be down costs no time"

    # the same node back on its ports: two good probes (DS_INACTIVE_THRESHOLD) bring it back
    node = ringback_cluster.start(
        "ringback-a-again", sip_port=node.sip_port, http_port=node.http_port
    )
    in_log(switch, rf"ringback node {node.sip_uri} up", timeout=10)
    with RtpReceiver() as rtp:
        up = uac(
            "uac_switch_rtp",
            (switch.host, switch.port),
            service=number,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=WARNING_S + 10,
        )
    up.assert_all_ok(1)
    assert_heard(rtp_audio(rtp.packets), court_reference, "RTP after the node came back")

    got = requests_in(callee, "INVITE")
    assert [m.request_uri for m in got] == [
        target(number, switch, marked=False),
        target(number, switch, marked=True),
    ]


def test_redirect_recipe_fails_open_when_a_node_dies_mid_warning(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
) -> None:
    """The node sent its 183 and then vanished (SIGKILL 1.5 s into the warning): after
    RINGBACK_FR_INV_MS (here 5 s, given with -A like any deployment value) the call goes on."""
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer_any")
    fr_inv_s = 5.0
    switch = recipe(
        "kamailio-redirect.cfg",
        dispatcher=[node],
        callee=callee,
        DS_PING_INTERVAL=3600,
        RINGBACK_FR_INV_MS=int(fr_inv_s * 1000),
    )
    number = ringback_cluster.listed
    killer = threading.Timer(1.5, node.process.popen.kill)
    with RtpReceiver() as rtp:
        killer.start()
        try:
            result = uac(
                "uac_switch_rtp",
                (switch.host, switch.port),
                service=number,
                extra_args=["-key", "rtp_port", str(rtp.port)],
                timeout=fr_inv_s + 10,
            )
        finally:
            killer.cancel()
    result.assert_all_ok(1)

    (early,) = received(result, 183)
    answered = (invite_answered(result).time - early.time).total_seconds()
    assert fr_inv_s - 0.2 <= answered <= fr_inv_s + 1.0, result.describe()
    assert 50 <= len(rtp.packets) <= 90, f"{len(rtp.packets)} packets before the node died"
    in_log(switch, r"ringback gave 408 for .*: fail open")
    assert "silent for" not in switch.log(), "the node did reply (183): no other node is tried"
    (invite,) = requests_in(callee, "INVITE")
    assert invite.request_uri == target(number, switch, marked=False)


def test_redirect_recipe_fails_open_when_ringback_answers_anything_but_3xx(
    uac: Uac, sipp_uas: Callable[..., SippServer], recipe: StartRecipe
) -> None:
    broken = sipp_uas("uas_503")  # a "ringback node" that answers 503 Service Unavailable
    callee = sipp_uas("uas_answer_any")
    switch = recipe(
        "kamailio-redirect.cfg", dispatcher=[broken.addr], callee=callee, DS_PING_INTERVAL=3600
    )
    number = "+8613800138000"
    result = uac("uac_call_through_switch", (switch.host, switch.port), service=number)
    result.assert_all_ok(1)
    assert not received(result, 503), "the 503 must not reach the caller"
    assert [m.method for m in requests_in(broken)] == ["INVITE", "ACK"]
    (invite,) = requests_in(callee, "INVITE")
    assert invite.request_uri == target(number, switch, marked=False)
    in_log(switch, r"ringback gave 503 for .*: fail open")


# --------------------------------------------------------------------------- (d) HTTP dip


def test_dip_recipe_listed_number_hears_the_warning_then_reaches_the_callee(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
    court_reference: np.ndarray,
) -> None:
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer")
    switch = recipe(
        "kamailio-dip.cfg",
        dispatcher=[node],
        callee=callee,
        **dip_defines(node, ringback_cluster.switch_token),
    )
    number = ringback_cluster.listed
    with RtpReceiver() as rtp:
        result = uac(
            "uac_switch_rtp",
            (switch.host, switch.port),
            service=number,
            extra_args=["-key", "rtp_port", str(rtp.port)],
            timeout=WARNING_S + 10,
        )
    result.assert_all_ok(1)
    in_log(switch, rf"dip: \{number} listed")

    # the 183 and the court's recording, then the callee's 200 after the warning
    (early,) = received(result, 183)
    assert not received(result, 302), "the switch follows the 302"
    answer = invite_answered(result)
    packets = rtp.packets
    assert rtp_stream_problems(packets, 0) == []
    assert len(packets) == round(WARNING_S / 0.020)
    assert_heard(rtp_audio(packets), court_reference, "RTP through the dip recipe")
    assert early.time.timestamp() - 0.01 <= packets[0].arrival
    assert packets[-1].arrival <= answer.time.timestamp()

    assert node.sip_requests("INVITE") == 1
    got = requests_in(callee)
    assert [m.method for m in got] == ["INVITE", "ACK", "BYE"], got
    assert got[0].request_uri == target(number, switch, marked=True)
    assert got[0].time.timestamp() >= packets[-1].arrival - 0.005, "callee before the warning"


def test_dip_recipe_unlisted_number_never_reaches_ringbacks_sip_side(
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
) -> None:
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer")  # the dip marks what it checked: ;rbk
    switch = recipe(
        "kamailio-dip.cfg",
        dispatcher=[node],
        callee=callee,
        **dip_defines(node, ringback_cluster.switch_token),
    )
    number = ringback_cluster.unlisted
    result = uac("uac_call_through_switch", (switch.host, switch.port), service=number)
    result.assert_all_ok(1)
    in_log(switch, rf"dip: \{number} unlisted")

    assert setup_seconds(result) < 0.5, result.describe()
    assert node.sip_requests("INVITE") == 0, "ringback's SIP side saw the INVITE"
    (invite,) = requests_in(callee, "INVITE")
    assert invite.request_uri == target(number, switch, marked=True)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An HTTP "server" that accepts connections and never answers: base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOCALHOST, free_port("tcp")))
    sock.listen(64)
    try:
        yield f"http://{LOCALHOST}:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.mark.parametrize("failure", ["stopped", "hanging", "bad token"])
def test_dip_recipe_fails_open_when_ringbacks_http_fails(
    failure: str,
    uac: Uac,
    ringback_cluster: RingbackCluster,
    sipp_uas: Callable[..., SippServer],
    recipe: StartRecipe,
    black_hole: str,
) -> None:
    node = ringback_cluster.start("ringback-a")
    callee = sipp_uas("uas_answer_any")
    defines: Mapping[str, str | int] = {
        "stopped": dip_defines(node, ringback_cluster.switch_token),
        "hanging": dip_defines(black_hole, ringback_cluster.switch_token),
        "bad token": dip_defines(node, "rbk_not-a-token"),
    }[failure]
    switch = recipe("kamailio-dip.cfg", dispatcher=[node], callee=callee, **defines)
    if failure == "stopped":
        node.process.stop()
    number = ringback_cluster.listed  # listed, yet nobody could say so: no warning

    result = uac("uac_call_through_switch", (switch.host, switch.port), service=number)
    result.assert_all_ok(1)
    why = {"stopped": "curl error 7", "hanging": "curl error 28", "bad token": "HTTP 401"}
    in_log(switch, rf"dip for \{number} failed \({why[failure]}\): fail open")
    assert not received(result, 183)
    took = setup_seconds(result)
    if failure == "hanging":
        assert DIP_TIMEOUT_S - 0.1 <= took <= DIP_TIMEOUT_S + 1.0, result.describe()
    else:
        assert took < 0.5, result.describe()
    if failure != "stopped":
        assert node.sip_requests("INVITE") == 0, "the call went to ringback after a failed dip"
    (invite,) = requests_in(callee, "INVITE")
    assert invite.request_uri == target(number, switch, marked=False), "unchecked, unmarked"
