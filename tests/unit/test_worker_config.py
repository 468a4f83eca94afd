"""The worker's TOML and the gateway's [workers] section: validated at start, tokens only from
files or the environment, never shown in a repr or an error message."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.domain.accounts import Platform
from gateway.terminals.remote import BrokerLogin
from gateway.worker.backends import open_terminals
from gateway.worker.config import WorkerConfigError, load_worker_config
from tests.support import DEMO_CONFIG

SECRET = "s3cret-worker-token-0123456789"

WORKER_TOML = """
worker_id = "win-ldn-01"
gateway = "127.0.0.1:50051"
reconnect_max_seconds = 10

[backends.sim]
config = "{demo}"
state_path = "books.db"

[[terminals]]
login = 70001
server = "Broker-Live"
backend = "sim"
balance = "2500"

[[terminals]]
login = 70002
server = "Broker-Live"
platform = "MT4"
backend = "sim"
balance = "1000"
margin_mode = "NETTING"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text.replace("{demo}", str(DEMO_CONFIG)))
    return path


def test_a_worker_configuration_reads_with_its_token_from_the_environment(tmp_path: Path) -> None:
    config = load_worker_config(write(tmp_path, WORKER_TOML), {"MAM_WORKER_TOKEN": SECRET})
    assert (config.worker_id, config.gateway, config.uses_tls) == (
        "win-ldn-01",
        "127.0.0.1:50051",
        False,
    )
    assert config.token == SECRET and SECRET not in repr(config)
    assert [(t.login, t.platform, t.backend) for t in config.terminals] == [
        (BrokerLogin(70001, "Broker-Live"), Platform.MT5, "sim"),
        (BrokerLogin(70002, "Broker-Live"), Platform.MT4, "sim"),
    ]
    assert config.terminals[1].options == {"balance": "1000", "margin_mode": "NETTING"}


def test_a_token_file_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SECRET + "\n")
    text = 'token_file = "token"\n' + WORKER_TOML
    config = load_worker_config(write(tmp_path, text), {"MAM_WORKER_TOKEN": "other"})
    assert config.token == SECRET


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("127.0.0.1", "10.1.2.3"), "not a loopback address: set tls_ca_file"),
        (("reconnect_max_seconds = 10", "colour = 1"), "colour: unknown key"),
        (("login = 70002", "login = 70001"), "listed twice"),
        (('backend = "sim"\nbalance = "2500"', 'balance = "2500"'), "terminals[0].backend"),
        (('worker_id = "win-ldn-01"', 'tls_cert_file = "worker.toml"'), "worker_id: required"),
    ],
)
def test_a_bad_worker_configuration_names_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, WORKER_TOML.replace(*change))
    with pytest.raises(WorkerConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_worker_config(path, {"MAM_WORKER_TOKEN": SECRET})


def test_a_worker_without_a_token_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(WorkerConfigError, match=r"\$MAM_WORKER_TOKEN: no worker token"):
        load_worker_config(write(tmp_path, WORKER_TOML), {})


def test_sim_terminals_open_on_one_broker_whose_books_outlive_the_worker(tmp_path: Path) -> None:
    config = load_worker_config(write(tmp_path, WORKER_TOML), {"MAM_WORKER_TOKEN": SECRET})
    backends, terminals = open_terminals(config)
    assert set(terminals) == {t.login for t in config.terminals}
    (backend,) = backends
    backend.broker.open_account(70003, balance=Decimal(1))  # type: ignore[attr-defined]
    backend.close()
    reopened, _ = open_terminals(config)
    assert reopened[0].broker.has_account(70003)  # type: ignore[attr-defined]
    reopened[0].close()
    assert (tmp_path / "books.db").exists()


def test_an_unknown_backend_or_option_is_a_configuration_error(tmp_path: Path) -> None:
    unknown = WORKER_TOML.replace('platform = "MT4"\nbackend = "sim"', 'backend = "mt9"')
    config = load_worker_config(write(tmp_path, unknown), {"MAM_WORKER_TOKEN": SECRET})
    with pytest.raises(WorkerConfigError, match="'mt9' is not one of mt5, sim"):
        open_terminals(config)
    bad_option = WORKER_TOML.replace('balance = "2500"', 'balance = "2500"\nswap = 1')
    config = load_worker_config(write(tmp_path, bad_option), {"MAM_WORKER_TOKEN": SECRET})
    with pytest.raises(WorkerConfigError, match="swap: not an option of the sim backend"):
        open_terminals(config)


# -- the gateway's [workers] section ----------------------------------------------------------


def test_worker_tokens_come_from_a_file_and_the_environment_and_stay_hidden(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# one per line\nwin-1:{SECRET}\n\n{SECRET}-any\n")
    config = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__WORKERS__ENABLED": "true",
            "MAM__WORKERS__TOKENS_FILE": str(tokens),
            "MAM__WORKERS__PLATFORMS": '["MT5"]',
            "MAM_WORKER_TOKENS": f"{SECRET}-env",
        },
    )
    workers = config.workers
    assert [(t.worker_id, t.secret) for t in workers.tokens] == [
        ("win-1", SECRET),
        ("", f"{SECRET}-any"),
        ("", f"{SECRET}-env"),
    ]
    assert SECRET not in repr(config)
    assert workers.hosts(Platform.MT5) and not workers.hosts(Platform.MT4)
    assert not workers.hosts(Platform.SIMULATED)


def test_a_worker_token_entry_may_list_the_logins_it_hosts(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"win-1:{SECRET} 70001 70002@Broker-Live\n{SECRET}-any\n")
    workers = load_config(
        DEMO_CONFIG,
        environ={
            "MAM__WORKERS__ENABLED": "true",
            "MAM__WORKERS__TOKENS_FILE": str(tokens),
            "MAM_WORKER_TOKENS": f"win-2:{SECRET}-env 70003,{SECRET}-env-any",
        },
    ).workers
    assert workers.tokens_file == tokens
    assert [(t.worker_id, [str(h) for h in t.logins], t.from_file) for t in workers.tokens] == [
        ("win-1", ["70001", "70002@Broker-Live"], True),
        ("", [], True),
        ("win-2", ["70003"], False),
        ("", [], False),
    ]
    (bound, *_) = workers.tokens
    assert bound.logins[0].covers(70001, "Any-Server")
    assert bound.logins[1].covers(70002, "Broker-Live")
    assert not bound.logins[1].covers(70002, "Broker-Demo")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (f"win-1:{SECRET} 7001x", "field 2 is not a login"),
        (f"win-1:{SECRET} 7001 0", "field 3 is not a login"),
        (f"win-1:{SECRET} 7001@", "field 2 is not a login"),
        (f"{SECRET},win-2:{SECRET}", "a worker token appears in two entries"),
    ],
)
def test_a_bad_worker_token_entry_is_refused_without_showing_the_token(
    entry: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(
            DEMO_CONFIG, environ={"MAM__WORKERS__ENABLED": "true", "MAM_WORKER_TOKENS": entry}
        )
    assert SECRET not in str(refused.value)


def test_workers_are_off_by_default_and_need_a_token_when_on() -> None:
    assert not load_config(DEMO_CONFIG, environ={}).workers.hosts(Platform.MT5)
    with pytest.raises(ConfigError, match="no worker token"):
        load_config(DEMO_CONFIG, environ={"MAM__WORKERS__ENABLED": "true"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAM_WORKER_TOKENS": "short"}, r"\$MAM_WORKER_TOKENS: a worker token must be"),
        ({"MAM__WORKERS__PLATFORMS": '["SIMULATED"]'}, "workers.platforms"),
        ({"MAM__WORKERS__HEARTBEAT_SECONDS": "0"}, "workers.heartbeat_seconds"),
        ({"MAM__WORKERS__TOKENS_FILE": "/nonexistent"}, "workers.tokens_file: cannot read"),
    ],
)
def test_a_bad_workers_section_names_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(DEMO_CONFIG, environ={"MAM__WORKERS__ENABLED": "true", **environ})
    assert "short" not in str(refused.value)  # a token is never repeated in a message


def test_mt4_accounts_go_to_workers_or_to_the_mt4_bridge_never_both() -> None:
    both = {
        "MAM__WORKERS__ENABLED": "true",
        "MAM_WORKER_TOKENS": SECRET,
        "MAM__MT4_BRIDGE__LISTEN": "127.0.0.1:0",
    }
    with pytest.raises(ConfigError, match="MT4 accounts go either to workers or"):
        load_config(DEMO_CONFIG, environ=both)
    config = load_config(DEMO_CONFIG, environ={**both, "MAM__WORKERS__PLATFORMS": '["MT5"]'})
    assert config.workers.platforms == (Platform.MT5,)
