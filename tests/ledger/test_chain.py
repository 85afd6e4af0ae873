"""The chain client: the persistent embedded chain, and the errors a person sees."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ledger import ChainError, Ledger, LedgerConfig
from ledger.chain import Chain, decode_revert
from ledger.units import ONE
from tests.ledger.conftest import new_account


def test_the_embedded_chain_survives_a_restart(led: Ledger, config: LedgerConfig) -> None:
    user = new_account()
    led.faucet(user)
    led.deposit(user, 5 * ONE)
    with led.session() as s:
        head = s.chain.head()
        dep = s.deployment
    led.close()

    with Ledger(config) as again:
        with again.session() as s:
            assert s.chain.head() == head
            assert s.deployment == dep
            assert s.ledger.functions.accountOf(user.address).call() == [5 * ONE, 0]
            assert s.token.functions.balanceOf(user.address).call() == 995 * ONE
        again.deposit(user, ONE)  # and new blocks build on the old ones
        with again.session() as s:
            assert s.chain.head() > head
            assert s.ledger.functions.accountOf(user.address).call() == [6 * ONE, 0]


def test_one_process_at_a_time_holds_the_embedded_chain(led: Ledger) -> None:
    from ledger.evmstore import EmbeddedChain

    with led.session():
        with pytest.raises(ChainError) as info:
            EmbeddedChain(led.chain_file, lock_timeout_s=0.2)
    assert info.value.code == "chain_busy"


def test_an_unreachable_rpc_is_one_clear_error(config: LedgerConfig) -> None:
    with Ledger(replace(config, chain_rpc="http://127.0.0.1:9")) as led:
        with pytest.raises(ChainError) as info:
            led.faucet(new_account())
    assert info.value.code == "chain_unreachable"
    assert "http://127.0.0.1:9" in info.value.message
    assert "--chain-rpc" in info.value.hint


def test_a_url_that_is_not_http_is_refused(config: LedgerConfig) -> None:
    with Ledger(replace(config, chain_rpc="ftp://example")) as led:
        with pytest.raises(ChainError) as info:
            led.deploy()
    assert info.value.code == "bad_rpc"


def test_the_wrong_chain_id_is_refused(led: Ledger) -> None:
    with led.session() as s:
        dep = s.deployment
    replace(dep, chain_id=1).save(led.deployment_file)
    with pytest.raises(ChainError) as info:
        led.wallet(new_account().address)
    assert info.value.code == "wrong_chain"
    assert "chain 1" in info.value.message


def test_a_wrong_contract_address_is_refused(led: Ledger) -> None:
    user = new_account()
    led.faucet(user)
    with led.session() as s:
        dep = s.deployment
    # an address with no code, then a contract that is not a RealmLedger (the token)
    for wrong in ("0x" + "12" * 20, dep.token):
        replace(dep, ledger=wrong).save(led.deployment_file)
        with pytest.raises(ChainError) as info:
            led.deposit(user, ONE)
        assert info.value.code == "wrong_contract"
    assert led.journal.last_txn_id() == 0


def test_deploy_records_addresses_and_refuses_to_replace_them(led: Ledger) -> None:
    dep = led.deploy()
    recorded = json.loads(led.deployment_file.read_text())
    assert recorded["ledger"] == dep.ledger and recorded["rpc"] is None
    with pytest.raises(ChainError) as info:
        led.deploy()
    assert info.value.code == "already_deployed"
    again = led.deploy(force=True)  # the journal is still empty: allowed
    assert again.ledger != dep.ledger


def test_reverts_are_decoded_into_the_contracts_error_names(led: Ledger, payer: object) -> None:
    worker = new_account()
    with led.session() as s:
        with pytest.raises(ChainError) as info:
            s.chain.transact(worker, s.ledger.functions.settle(1, b"\0" * 32, 0, b"\0" * 32, 0, b"\1" * 32), what="settle")
    assert info.value.code == "tx_reverted"
    assert f"NotSettler(caller={worker.address})" in info.value.message
    assert "settler key" in info.value.hint
    assert decode_revert("0x") is None


def test_no_transaction_goes_over_the_gas_cap(led: Ledger, config: LedgerConfig) -> None:
    led.deploy()
    user = new_account()
    with Ledger(replace(config, gas_cap=30_000)) as capped:
        with pytest.raises(ChainError) as info:
            capped.faucet(user)  # a mint needs about 50k gas
    assert info.value.code == "over_gas_cap"
    assert "30,000" in info.value.message
    with led.session() as s:
        assert s.token.functions.balanceOf(user.address).call() == 0  # nothing was sent


def test_deploy_records_which_key_is_which(led: Ledger) -> None:
    dep = led.deploy()
    keys = {name: led.config.root / f"{name}.key" for name in ("owner", "settler", "voucher")}
    assert all(path.exists() and path.stat().st_mode & 0o777 == 0o600 for path in keys.values())
    assert len({dep.owner, dep.settler, dep.voucher_signer}) == 3
    assert (dep.owner, dep.settler, dep.voucher_signer) == (
        led.owner_key.address,
        led.settler_key.address,
        led.voucher_key.address,
    )
    assert dep.dev and dep.exit_window == 10 and dep.version == 2
    with led.session() as s:
        assert s.token.functions.owner().call() == dep.owner
        assert s.token.functions.cap().call() == dep.supply_cap
        assert s.ledger.functions.owner().call() == dep.owner
        assert s.ledger.functions.settler().call() == dep.settler
        assert s.ledger.functions.voucherSigner().call() == dep.voucher_signer


def test_an_embedded_realm_of_the_old_contracts_starts_afresh(config: LedgerConfig) -> None:
    root = config.root
    root.mkdir(parents=True)
    old = {"chain_id": 131277322940537, "token": "0x" + "11" * 20, "ledger": "0x" + "22" * 20,
           "operator": "0x" + "33" * 20, "block": 1, "rpc": None}
    (root / "deployment.json").write_text(json.dumps(old))
    (root / "journal.db").write_bytes(b"a version 1 journal")
    with Ledger(config) as led:
        assert led.deployment() is None and led.journal.last_txn_id() == 0
    [aside] = list(root.parent.glob("ledger.v1-*"))
    assert (aside / "journal.db").read_bytes() == b"a version 1 journal"


def test_a_remote_realm_of_the_old_contracts_is_refused_with_a_way_out(config: LedgerConfig) -> None:
    root = config.root
    root.mkdir(parents=True)
    old = {"chain_id": 31337, "token": "0x" + "11" * 20, "ledger": "0x" + "22" * 20,
           "operator": "0x" + "33" * 20, "block": 1, "rpc": "http://127.0.0.1:9"}
    (root / "deployment.json").write_text(json.dumps(old))
    with Ledger(config) as led:
        with pytest.raises(ChainError) as info:
            led.deployment()
    assert info.value.code == "old_deployment"


def test_a_non_dev_chain_asks_for_gas_instead_of_paying_it(led: Ledger) -> None:
    with led.session() as s:
        chain: Chain = s.chain
        chain._embedded, embedded = None, chain._embedded  # look like a remote chain without unlocked accounts
        chain._unlocked = []
        try:
            with pytest.raises(ChainError) as info:
                chain.ensure_gas(new_account().address)
        finally:
            chain._embedded = embedded
    assert info.value.code == "no_gas"
