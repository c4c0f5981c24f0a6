"""--workers: campaigns in parallel processes, one corpus, nothing lost."""

from __future__ import annotations

import sqlite3

import pytest
from kfuzz.run.parallel import shard
from kfuzz.search.campaign import CampaignConfig


@pytest.mark.slow
def test_two_workers_two_targets_one_corpus(kfuzz, db_path):
    res = kfuzz("run", "ops.rmsnorm", "ops.softmax", "--workers", "2", "--max-examples", "40",
                "--compare", "exact", "--seed", "4", "--db", db_path, "--json")
    assert res.code == 1, res.err
    doc = res.json()
    assert sorted(c["target"] for c in doc["campaigns"]) == ["ops.rmsnorm", "ops.softmax"]
    assert all(c["examples"] == 40 for c in doc["campaigns"])
    reported = {f["fingerprint"] for f in doc["findings"]}
    conn = sqlite3.connect(db_path)
    stored = {r[0] for r in conn.execute("select fingerprint from findings")}
    assert reported <= stored
    assert {r[0] for r in conn.execute("select distinct target from findings")} == \
        {"ops.rmsnorm", "ops.softmax"}
    assert conn.execute("select status, findings from runs").fetchone() == ("done", len(reported))


def test_one_target_is_split_into_seed_shards():
    configs = shard([CampaignConfig(target="ops.rmsnorm", max_examples=100, seed=7)], 3)
    assert [c.max_examples for c in configs] == [33, 33, 33]
    assert len({c.seed for c in configs}) == 3 and configs[0].seed == 7
    many = [CampaignConfig(target=t) for t in ("ops.rmsnorm", "ops.softmax", "ops.rope")]
    assert shard(many, 2) == many


def test_bad_worker_count(kfuzz, db_path):
    res = kfuzz("run", "ops.rmsnorm", "--workers", "0", "--db", db_path)
    assert res.code == 2
    assert res.err == "kfuzz: error: --workers 0 must be at least 1\n"
