"""The machine line stated next to every measured number."""

import json

from synth2real.pilot.machine import describe_machine, machine_info
from synth2real.segment.device import resolve_device


def test_machine_info_is_json_and_says_what_auto_chose():
    info = machine_info("auto")
    assert json.loads(json.dumps(info)) == info
    assert info["device"] == f"auto: {resolve_device('auto').type}"
    assert machine_info("cpu")["device"] == "cpu" and machine_info()["device"] is None
    assert info["cores"] >= 1 and info["cpu"] and info["time"].endswith("+00:00")


def test_describe_machine_states_every_known_field_and_skips_missing_ones():
    info = {
        "cpu": "Test CPU", "cores": 2, "memory_gib": 23.5, "gpu": None, "device": "auto: cpu",
        "torch": "2.13.0", "torch_threads": 1, "omp_wait_policy": "PASSIVE",
        "load_avg": [1.5, 0.25, 0.0],
    }  # fmt: skip
    assert describe_machine(info) == (
        "Test CPU (2 cores, 23.5 GiB), device auto: cpu, torch 2.13.0, 1 torch threads, "
        "OMP_WAIT_POLICY=PASSIVE, load avg 1.5/0.25/0"
    )
    assert describe_machine({"cpu": "X", "cores": 4}) == "X (4 cores)"
