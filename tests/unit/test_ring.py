"""The consistent-hash ring of tmn.Client (tmn.ring) and the endpoints of
tmn-serve's loops (tmn.serve.loop_endpoint, core_list)."""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pytest

from tmn.ring import VNODES, HashRing, mix, point
from tmn.serve import core_list, loop_endpoint

ENDPOINTS = [f"tcp://10.0.0.{i}:5555" for i in range(1, 5)]  # names only: never connected


def test_positions_are_the_documented_hashes() -> None:
    """A client in another language reproduces the ring from docs/protocol.md."""
    d = hashlib.blake2b(b"tcp://h:1#7", digest_size=8).digest()
    assert point("tcp://h:1", 7) == int.from_bytes(d, "little")
    # SplitMix64 (Vigna): the first output of a generator seeded with 0 is mix(0)
    assert int(mix(0)) == 0xE220A8397B1DCDAF
    assert mix(np.array([0, 1, 2**64 - 1], dtype=np.uint64)).dtype == np.uint64


def test_every_endpoint_owns_about_its_share() -> None:
    ring = HashRing(ENDPOINTS)
    share = np.bincount(ring.shard_of(np.arange(200_000, dtype=np.uint64)),
                        minlength=4) / 200_000
    assert np.all(np.abs(share - 0.25) < 0.25 * 0.25), share


def test_adding_an_endpoint_moves_only_the_streams_it_takes() -> None:
    ids = np.arange(50_000, dtype=np.uint64)
    before = np.array(ENDPOINTS)[HashRing(ENDPOINTS).shard_of(ids)]
    after = np.array(ENDPOINTS + ["ipc:///new"])[HashRing(ENDPOINTS + ["ipc:///new"]).shard_of(ids)]
    moved = before != after
    assert np.all(after[moved] == "ipc:///new")
    assert 0.1 < moved.mean() < 0.3  # about 1/5


def test_the_ring_does_not_depend_on_the_order_of_the_endpoints() -> None:
    ids = np.arange(10_000, dtype=np.uint64)
    a, b = HashRing(ENDPOINTS), HashRing(ENDPOINTS[::-1])
    np.testing.assert_array_equal(np.array(ENDPOINTS)[a.shard_of(ids)],
                                  np.array(ENDPOINTS[::-1])[b.shard_of(ids)])
    assert a.endpoint_of(12345) == np.array(ENDPOINTS)[a.shard_of(np.uint64(12345))]
    assert len(a) == 4 and len(a._pos) == 4 * VNODES


def test_a_ring_refuses_no_endpoint_and_a_repeated_one() -> None:
    for bad in ([], ["a", "a"]):
        with pytest.raises(ValueError):
            HashRing(bad)


def test_loop_endpoints_follow_the_first() -> None:
    assert loop_endpoint("tcp://127.0.0.1:5555", 0) == "tcp://127.0.0.1:5555"
    assert loop_endpoint("tcp://127.0.0.1:5555", 3) == "tcp://127.0.0.1:5558"
    assert loop_endpoint("tcp://[::1]:5555", 1) == "tcp://[::1]:5556"
    assert loop_endpoint("tcp://127.0.0.1:*", 2) == "tcp://127.0.0.1:*"
    assert loop_endpoint("ipc:///run/tmn.sock", 2) == "ipc:///run/tmn.sock.2"
    with pytest.raises(ValueError):
        loop_endpoint("tcp://127.0.0.1:65535", 1)


def test_core_lists() -> None:
    assert core_list("2-5") == [2, 3, 4, 5]
    assert core_list("0,2-3") == [0, 2, 3]
    for bad in ("", "a", "3-1", "1,1", "-1", "0-99"):
        with pytest.raises(argparse.ArgumentTypeError):
            core_list(bad)
