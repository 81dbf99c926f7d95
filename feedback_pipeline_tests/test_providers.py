"""The provider registry and its specs: every connector module's SPEC is complete and
consistent, and everything derived from the specs (names, assets, resources, statuses,
emulators) agrees with the contract."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import orjson
import pytest

from feedback_pipeline.normalize import FeedbackBatch, coerce_rating
from feedback_pipeline.providers import configured, get_spec, names, provider_from_env, specs
from feedback_pipeline.providers.base import Provider
from feedback_pipeline.providers.spec import ProviderResource, ProviderSpec, Setting
from feedback_pipeline.sandbox.app import emulator_classes
from feedback_pipeline.sandbox.core import SandboxState
from feedback_pipeline.schema import FEEDBACK_COLUMNS

# CONTRACT.md section 2: the providers (and so the assets) that must exist.
CONTRACT_PROVIDERS = {"mintlify", "usersnap", "formbricks", "mapbox", "feedbackkit"}


def test_every_contract_provider_is_discovered_with_its_asset_name():
    assert set(names()) >= CONTRACT_PROVIDERS
    assert {get_spec(n).asset_name for n in CONTRACT_PROVIDERS} == {f"{n}_feedback" for n in CONTRACT_PROVIDERS}


@pytest.mark.parametrize("name", names())
def test_every_spec_is_complete(name: str):
    spec = get_spec(name)
    assert spec.name == name
    assert spec.problems() == []
    assert issubclass(spec.provider, Provider) and spec.provider.__module__ == f"feedback_pipeline.providers.{name}"
    # The resource has exactly one field per setting, its default the declared one.
    resource = spec.resource()
    assert isinstance(resource, ProviderResource) and resource.SPEC is spec
    assert {key: getattr(resource, key) for key in spec.by_key} == {key: s.default for key, s in spec.by_key.items()}
    # An emulator serves it, and its settings configure the provider completely.
    emulator = emulator_classes()[name](SandboxState())
    env = emulator.env("http://127.0.0.1:9")
    assert set(env) == {s.var for s in spec.settings}
    provider = provider_from_env(name, env)
    assert provider.name == name and provider.account_id == env[spec.setting(spec.account).var]


def test_every_emulator_belongs_to_a_provider():
    assert set(emulator_classes()) == set(names())


def test_keys_are_the_variable_names_without_the_prefix_lowercased():
    keys = {s.var: get_spec(n).key(s) for n in names() for s in get_spec(n).settings}
    assert keys["MINTLIFY_PROJECT_ID"] == "project_id"
    assert keys["FORMBRICKS_HUB_API_KEY"] == "hub_api_key"
    assert keys["MAPBOX_ACCOUNT"] == "account"
    assert keys["USERSNAP_JWT_KID"] == "jwt_kid"
    assert keys["MINTLIFY_BASE_URL"] == "base_url"


def test_configured_means_every_required_variable_set():
    env = {s.var: "x" for s in get_spec("mapbox").settings if s.required}
    assert configured(env) == ("mapbox",)
    assert configured({}) == ()
    assert set(configured({s.var: "x" for spec in specs().values() for s in spec.settings})) == set(names())


def test_definitions_resources_read_every_set_variable_through_envvar():
    spec = get_spec("mintlify")
    resource = spec.resource_from_env({"MINTLIFY_API_KEY": "mint_secret", "MINTLIFY_PROJECT_ID": "p"})
    # EnvVar keeps the variable's name, never its value.
    assert "mint_secret" not in repr(resource) and "mint_secret" not in str(dict(resource))
    assert isinstance(resource, ProviderResource)
    assert resource.base_url == spec.setting("base_url").default


def test_an_unknown_setting_key_is_refused_not_dropped():
    with pytest.raises(TypeError, match="api_key"):
        get_spec("formbricks").resource(api_key="k")


def test_an_unknown_provider_names_the_known_ones():
    with pytest.raises(KeyError, match="mintlify"):
        get_spec("nope")


def test_an_incomplete_spec_lists_its_problems():
    class Dummy(Provider):  # never instantiated
        pass

    spec = ProviderSpec(
        name="Dummy",
        asset_name="dummy",
        description=" ",
        settings=(Setting("OTHER_URL", default="x"),),
        account="tenant",
        statuses={"new": "fresh"},
        provider=Dummy,
        page_size=0,
        hints={401: "check DUMMY_KEY"},
    )
    problems = "\n".join(spec.problems())
    for part in ("lowercase identifier", "is not Dummy_feedback", "no description", "does not start with DUMMY_", "required and has a default",
                 "no secret", "account 'tenant'", "'fresh'", "page_size", "no hint for HTTP 403"):
        assert part in problems, part


def test_definitions_hold_one_resource_per_provider():
    from feedback_pipeline.definitions import build_definitions

    defs = build_definitions({})
    assert {key for key, resource in defs.resources.items() if isinstance(resource, ProviderResource)} == set(names())
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} >= {get_spec(n).asset_name for n in names()}
    assert isinstance(defs.resources["mintlify"], dg.ConfigurableResource)


def _nps_rule(name: str, record: dict) -> float | None | str:
    """What an NPS answer is, in Python: Formbricks fields of type nps (value_number);
    Usersnap's first ordered_inputs entry by order whose label mentions NPS. "none": no answer."""
    if name == "formbricks":
        return coerce_rating(record.get("value_number")) if record.get("field_type") == "nps" else "none"
    entries = [e for e in record.get("ordered_inputs") or [] if isinstance(e, dict) and "nps" in str(e.get("label", "")).lower()]
    if not entries:
        return "none"
    return coerce_rating(sorted(entries, key=lambda e: e["order"])[0].get("value"))


@pytest.mark.parametrize("name", [n for n in names() if get_spec(n).nps_answers])
def test_the_nps_answers_query_of_a_spec_finds_each_records_nps_answer(name: str):
    state = SandboxState(days=5, per_day=60)
    emulator = emulator_classes()[name](state)
    now = datetime.now(timezone.utc)
    rng = state.rng(name)
    records = [r for i in range(5) for r in emulator.generate_day(rng, now.date() - timedelta(days=i), 60, now)]
    records = orjson.loads(orjson.dumps(records))
    provider = provider_from_env(name, emulator.env("http://127.0.0.1:9"))
    batch = FeedbackBatch(name, provider.account_id)
    provider.normalize(records, batch)
    rows = batch.rows()
    stored = {r["feedback_id"] for r in rows.to_pylist()}
    expected = sorted(
        (str(v) for r in records if (v := _nps_rule(name, r)) != "none" and str(r.get(emulator.id_field)) in stored),
    )
    assert len(expected) > 10  # the sandbox does generate NPS answers
    con = duckdb.connect()
    con.execute("CREATE TABLE feedback (" + ", ".join(f"{c} {t}" for c, t, _ in FEEDBACK_COLUMNS) + ")")
    con.execute("INSERT INTO feedback SELECT *, now() FROM rows")
    got = sorted(str(score) for (_, score) in con.execute(get_spec(name).nps_answers).fetchall())
    assert got == expected
