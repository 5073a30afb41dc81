"""code-host-limits: request budgets per code host, and in-flight caps per shard.

Answers the `rate-limits` question only (world `limiter`). A code host's budget comes from
its own entry in the config, laid over its service type's (GitHub 5,000/h, GitLab 36,000/h,
Bitbucket Server 28,800/h unless configured otherwise); hosts with neither stay unlimited.
The service type is the entry's `service_type` when it sets one, else the one the host
reports in the key's load, else the known type of github.com / gitlab.com. Shards get
`max_in_flight` caps when the config sets them. See code-host-limits.toml.
"""

import json
import tomllib

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.rate_limits import KeyLoad, Limit, LimitKey_CodeHost, LimitKey_Shard
from wit_world.imports.log import Level, log

# What the code hosts allow one token, per hour; bursts kept small.
SERVICE_TYPES = {
    "github": {"per_hour": 5000, "burst": 10},
    "gitlab": {"per_hour": 36000, "burst": 50},
    "bitbucketServer": {"per_hour": 28800, "burst": 40},
}
# Service types of well-known code hosts, for when the host reports none.
KNOWN_HOSTS = {"github.com": "github", "gitlab.com": "gitlab"}
# A shard limit must carry a rate; this one never binds (1,000 a second).
SHARD_RATE = {"per_hour": 3_600_000, "burst": 1000}

BUDGET_KEYS = {"per_hour", "burst", "max_in_flight"}
U32_MAX = 2**32 - 1


class Config:
    def __init__(self, table: dict):
        check_keys("config", table, {"service_types", "code_hosts", "shards"})
        self.service_types = {name: dict(budget) for name, budget in SERVICE_TYPES.items()}
        for name, budget in table.get("service_types", {}).items():
            check_budget(f"service_types.{name}", budget)
            self.service_types.setdefault(name, {}).update(budget)
        self.code_hosts = {}
        for host, entry in table.get("code_hosts", {}).items():
            check_budget(f"code_hosts.{host}", entry, extra={"service_type"})
            self.code_hosts[host] = dict(entry)
        shards = table.get("shards", {})
        check_keys("shards", shards, {"max_in_flight", "max_in_flight_by_addr"})
        self.shard_cap = shards.get("max_in_flight")
        self.shard_caps = shards.get("max_in_flight_by_addr", {})
        for where, cap in [("shards.max_in_flight", self.shard_cap), *self.shard_caps.items()]:
            if cap is not None:
                check_count(where, cap)

    def budget(self, code_host: str, service_type: str) -> dict | None:
        """The host's own entry over its service type's budget; None when neither has a rate.

        The service type is the entry's `service_type` (an override), else `service_type` as
        the host reports it for the key, else the known type of github.com / gitlab.com.
        """
        entry = self.code_hosts.get(code_host, {})
        if "service_type" in entry:
            kind = entry["service_type"]
        else:
            kind = service_type or KNOWN_HOSTS.get(code_host, "")
        budget = dict(self.service_types.get(kind, {}))
        budget.update({k: v for k, v in entry.items() if k in BUDGET_KEYS})
        if "per_hour" not in budget:
            return None
        budget.setdefault("burst", 1)
        return budget

    def shard_limit(self, addr: str) -> dict | None:
        cap = self.shard_caps.get(addr, self.shard_cap)
        return None if cap is None else {**SHARD_RATE, "max_in_flight": cap}


def check_keys(where: str, table, allowed: set):
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def check_count(where: str, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= U32_MAX:
        raise ValueError(f"{where}: expected a whole number from 1 to {U32_MAX}, got {value!r}")


def check_budget(where: str, budget, extra=frozenset()):
    check_keys(where, budget, BUDGET_KEYS | extra)
    for key in BUDGET_KEYS & set(budget):
        check_count(f"{where}.{key}", budget[key])
    if "service_type" in budget and not isinstance(budget["service_type"], str):
        raise ValueError(f"{where}.service_type: expected a string")


def parse(text: str) -> dict:
    """TOML; JSON also accepted (a text starting with `{`)."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    return tomllib.loads(text)


config = Config({})


class Lifecycle(exports.Lifecycle):
    def init(self, text: str) -> None:
        global config
        try:
            config = Config(parse(text))
        except (ValueError, tomllib.TOMLDecodeError) as err:
            raise Err(f"code-host-limits.toml: {err}")
        log(Level.INFO, "code-host-limits configured", [
            ("code_hosts", ", ".join(sorted(config.code_hosts))),
            ("shard_cap", str(config.shard_cap)),
        ])


class ExplainLimits(exports.ExplainLimits):
    """What `clonekeeper explain` shows beside a limit: where the budget came from."""

    def explain_limit(self, now: int, key: str, service_type: str, per_hour: int, burst: int) -> str:
        if key.startswith("shard "):
            return f"{key}: at most {per_hour:,}/h, burst {burst}, and the configured in-flight cap"
        host = key.removeprefix("code host ")
        entry = config.code_hosts.get(host, {})
        kind = entry.get("service_type") or service_type or KNOWN_HOSTS.get(host, "")
        if any(k in entry for k in ("per_hour", "burst")):
            return f"{host}: {per_hour:,}/h, burst {burst}, from its own [code_hosts] entry"
        return f"{host}: {per_hour:,}/h, burst {burst}, the {kind or 'unknown'} budget for one token"


class RateLimits(exports.RateLimits):
    def limits(self, now: int, seen: list[KeyLoad]) -> list[Limit]:
        out = []
        for load in seen:
            if isinstance(load.key, LimitKey_CodeHost):
                budget = config.budget(load.key.value, load.service_type)
            else:
                budget = config.shard_limit(load.key.value)
            if budget is not None:
                out.append(Limit(load.key, budget["per_hour"], budget["burst"], budget.get("max_in_flight")))
        return out
