"""Per-Incident classification (xmppbridge.iodef.classify), mostly through read_document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree

from xmppbridge.errors import SchemaInvalid
from xmppbridge.iodef.classify import TITLE_MAX, classify, parse_datetime
from xmppbridge.iodef.document import read_document
from xmppbridge.iodef.model import Incident
from xmppbridge.iodef.parse import parse_untrusted
from xmppbridge.policy.nodes import node_name

V1 = "urn:ietf:params:xml:ns:iodef-1.0"
V2 = "urn:ietf:params:xml:ns:iodef-2.0"


def v1(
    incident_attrs: str = 'purpose="reporting"', body: str = "", event: str = "", before: str = ""
) -> bytes:
    return f"""<IODEF-Document version="1.00" lang="en" xmlns="{V1}">
  <Incident {incident_attrs}>
    <IncidentID name="csirt.a.test">T-1</IncidentID>{before}
    <ReportTime>2024-05-01T12:00:00Z</ReportTime>{body}
    <Assessment><Impact type="recon"/></Assessment>
    <Contact role="creator" type="organization"><Email>csirt@a.test</Email></Contact>{event}
  </Incident>
</IODEF-Document>""".encode()


def v2(
    incident_attrs: str = 'purpose="reporting"',
    body: str = "",
    times: str = "",
    extra: str = "",
    generation: str = "2024-05-01T12:00:00Z",
    root_extra: str = "",
    before: str = "",
) -> bytes:
    return f"""<IODEF-Document version="2.00" xml:lang="en" xmlns="{V2}">
  <Incident {incident_attrs}>
    <IncidentID name="csirt.a.test">T-2</IncidentID>{before}{times}
    <GenerationTime>{generation}</GenerationTime>{body}
    <Contact role="creator" type="organization">
      <Email><EmailTo>csirt@a.test</EmailTo></Email>
    </Contact>{extra}
  </Incident>{root_extra}
</IODEF-Document>""".encode()


def only(data: bytes, **kwargs: str) -> Incident:
    (incident,) = read_document(data, **kwargs).incidents
    return incident


# --- restriction --------------------------------------------------------------------------------------


def test_restriction_inheritance_trap_v1() -> None:
    """No restriction on Incident -> "private", even though the 1.0 XSD defaults IncidentID to public."""
    data = v1(
        event="<EventData><Flow><System><Node><Address>192.0.2.1</Address></Node></System></Flow></EventData>"
    )
    doc = read_document(data)
    before = etree.tostring(parse_untrusted(data))
    (incident,) = doc.incidents
    assert incident.restriction_raw == "private"
    assert incident.restriction == "private"
    assert incident.narrowest_restriction == "private"
    assert etree.tostring(doc.root) == before  # validated tree unchanged: no defaults inserted


def test_restriction_on_incident_id_is_not_the_incident_restriction() -> None:
    data = v1(incident_attrs='purpose="reporting"').replace(
        b'<IncidentID name="csirt.a.test">', b'<IncidentID name="csirt.a.test" restriction="public">'
    )
    assert only(data).restriction == "private"


def test_v1_default_restriction_keeps_its_own_key() -> None:
    incident = only(v1('purpose="mitigation" restriction="default"'))
    assert (incident.restriction_raw, incident.restriction) == ("default", "default")


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("white", "public"),
        ("green", "partner"),
        ("amber", "need-to-know"),
        ("red", "private"),
        ("public", "public"),
        ("partner", "partner"),
        ("need-to-know", "need-to-know"),
        ("private", "private"),
    ],
)
def test_tlp_aliases(written: str, canonical: str) -> None:
    incident = only(v2(f'purpose="watch" restriction="{written}"'))
    assert incident.restriction_raw == written
    assert incident.restriction == canonical


def test_ext_value_restriction_and_purpose() -> None:
    incident = only(
        v2('purpose="ext-value" ext-purpose="exercise" restriction="ext-value" ext-restriction="tlp-clear"')
    )
    assert incident.restriction_raw == "ext-value"
    assert incident.restriction == "private"  # an audience we cannot name is the narrowest one
    assert incident.purpose == "ext-value"
    assert node_name("iodef", incident.restriction, incident.purpose) == "iodef/private/other"


def test_whitespace_around_nmtoken_is_tolerated() -> None:
    assert only(v2('purpose=" watch " restriction=" green "')).restriction == "partner"


def test_narrowest_restriction_sees_inner_markings() -> None:
    event = '<EventData restriction="private"><Description>internal host names</Description></EventData>'
    incident = only(v2('purpose="reporting" restriction="public"', extra=event))
    assert incident.restriction == "public"
    assert incident.narrowest_restriction == "private"


def test_narrowest_restriction_includes_root_additional_data_and_ignores_foreign_xml() -> None:
    foreign = (
        '<AdditionalData dtype="xml" restriction="public">'
        '<x:Policy xmlns:x="urn:example:other" restriction="red"/></AdditionalData>'
    )
    assert (
        only(v2('purpose="reporting" restriction="public"', root_extra=foreign)).narrowest_restriction
        == "public"
    )
    marked = '<AdditionalData dtype="string" restriction="amber">note</AdditionalData>'
    assert (
        only(v2('purpose="reporting" restriction="public"', root_extra=marked)).narrowest_restriction
        == "need-to-know"
    )


# --- ids, title -------------------------------------------------------------------------------------


def test_incident_id_fields() -> None:
    data = v2().replace(
        b'<IncidentID name="csirt.a.test">T-2</IncidentID>',
        b'<IncidentID name="csirt.a.test" instance="part-3">\n  T-2\n</IncidentID>',
    )
    incident = only(data)
    assert (incident.id_name, incident.id, incident.instance) == ("csirt.a.test", "T-2", "part-3")


def test_alternative_and_related_ids() -> None:
    before = (
        '<AlternativeID><IncidentID name="csirt.b.test">B-9</IncidentID>'
        '<IncidentID name="cert.c.test">C-1</IncidentID></AlternativeID>'
        '<RelatedActivity><IncidentID name="csirt.a.test">T-0</IncidentID></RelatedActivity>'
        "<RelatedActivity><URL>https://example.com/x</URL></RelatedActivity>"
        '<RelatedActivity><IncidentID name="csirt.a.test">T-00</IncidentID></RelatedActivity>'
    )
    incident = only(v2(before=before))
    assert incident.alternative_ids == (("csirt.b.test", "B-9"), ("cert.c.test", "C-1"))
    assert incident.related_ids == (("csirt.a.test", "T-0"), ("csirt.a.test", "T-00"))


def test_title_is_first_description_collapsed() -> None:
    body = (
        "<Description>\n   Phishing\t\tcampaign\n  against   example.com  </Description>"
        "<Description>2nd</Description>"
    )
    assert only(v2(body=body)).title == "Phishing campaign against example.com"


def test_title_is_truncated() -> None:
    title = only(v2(body=f"<Description>{'x' * 500}</Description>")).title
    assert len(title) == TITLE_MAX
    assert title.endswith("…")


def test_title_empty_without_description() -> None:
    assert only(v2()).title == ""


# --- times ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # zone-less -> UTC
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T07:00:00-05:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("  2024-05-01T12:00:00Z\n", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T24:00:00Z", datetime(2024, 5, 2, tzinfo=UTC)),
        ("2024-05-01 12:00:00+0100", datetime(2024, 5, 1, 11, tzinfo=UTC)),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-05-01",
        "2024-05-01T12:00:60Z",
        "2024-05-01T12:00:00+25:00",
        "0000-01-01T00:00:00Z",
        "2024-05-01T24:00:01Z",
    ],
)
def test_unparsable_times_are_none(text: str) -> None:
    assert parse_datetime(text) is None


def test_incident_times_are_aware_utc() -> None:
    times = (
        "<DetectTime>2024-04-30T23:00:00-01:00</DetectTime><StartTime>2024-04-30T22:00:00</StartTime>"
        "<EndTime>2024-05-01T01:00:00.25Z</EndTime><ReportTime>2024-05-01T11:00:00Z</ReportTime>"
    )
    incident = only(v2(times=times, generation="2024-05-01T13:00:00+01:00"))
    assert incident.detect_time == datetime(2024, 5, 1, 0, tzinfo=UTC)
    assert incident.start_time == datetime(2024, 4, 30, 22, tzinfo=UTC)
    assert incident.end_time == datetime(2024, 5, 1, 1, 0, 0, 250000, tzinfo=UTC)
    assert incident.report_time == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert incident.generation_time == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert incident.published_time == incident.report_time
    for moment in (incident.detect_time, incident.start_time, incident.end_time, incident.generation_time):
        assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


def test_only_direct_child_times_count() -> None:
    event = "<EventData><DetectTime>2020-01-01T00:00:00Z</DetectTime></EventData>"
    assert only(v2(extra=event)).detect_time is None


def test_bad_time_in_warn_mode_is_none_not_a_crash() -> None:
    doc = read_document(v2(generation="soon"), schema_mode="warn")
    assert doc.schema_errors
    assert doc.incidents[0].generation_time is None
    with pytest.raises(SchemaInvalid, match="GenerationTime"):
        read_document(v2(generation="soon"))


def test_offsets_keep_the_instant() -> None:
    parsed = parse_datetime("2024-05-01T14:30:00+02:00")
    assert parsed == datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))


# --- structure --------------------------------------------------------------------------------------


def test_prefixed_document_classifies_the_same() -> None:
    data = f"""<i:IODEF-Document xmlns:i="{V2}" version="2.00">
  <i:Incident purpose="watch" restriction="amber">
    <i:IncidentID name="csirt.a.test">T-9</i:IncidentID>
    <i:GenerationTime>2024-05-01T12:00:00Z</i:GenerationTime>
    <i:Contact role="creator" type="organization">
      <i:Email><i:EmailTo>a@a.test</i:EmailTo></i:Email>
    </i:Contact>
  </i:Incident>
</i:IODEF-Document>""".encode()
    incident = only(data)
    assert (incident.id, incident.restriction, incident.purpose) == ("T-9", "need-to-know", "watch")


def test_elements_from_other_namespaces_are_not_incidents() -> None:
    root = parse_untrusted(
        f"""<IODEF-Document xmlns="{V2}" version="2.00">
  <x:Incident xmlns:x="urn:example:other" purpose="reporting" restriction="public">
    <x:IncidentID name="evil">1</x:IncidentID>
  </x:Incident>
  <Incident purpose="reporting" restriction="red"><IncidentID name="csirt.a.test">T-3</IncidentID></Incident>
</IODEF-Document>""".encode()
    )
    (incident,) = classify(root, "2.0")
    assert (incident.id, incident.restriction) == ("T-3", "private")


def test_several_incidents_in_order() -> None:
    root = parse_untrusted(
        f"""<IODEF-Document xmlns="{V2}" version="2.00">
  <Incident purpose="reporting"><IncidentID name="a.test">1</IncidentID></Incident>
  <Incident purpose="watch" restriction="white"><IncidentID name="a.test">2</IncidentID></Incident>
</IODEF-Document>""".encode()
    )
    assert [(i.id, i.restriction, i.purpose) for i in classify(root, "2.0")] == [
        ("1", "private", "reporting"),
        ("2", "public", "watch"),
    ]


@pytest.mark.parametrize(
    ("incident", "needle"),
    [
        ('<Incident purpose="reporting"/>', "missing IncidentID"),
        ('<Incident purpose="reporting"><IncidentID>1</IncidentID></Incident>', "IncidentID@name"),
        (
            '<Incident purpose="reporting"><IncidentID name="a.test"> </IncidentID></Incident>',
            "IncidentID text",
        ),
        ('<Incident><IncidentID name="a.test">1</IncidentID></Incident>', "Incident@purpose"),
    ],
)
def test_unclassifiable_incident_is_rejected_even_in_warn_mode(incident: str, needle: str) -> None:
    data = f'<IODEF-Document xmlns="{V2}" version="2.00">{incident}</IODEF-Document>'.encode()
    with pytest.raises(SchemaInvalid, match=needle):
        read_document(data, schema_mode="warn")


def test_document_without_incident_is_rejected_in_warn_mode() -> None:
    with pytest.raises(SchemaInvalid, match="no Incident"):
        read_document(f'<IODEF-Document xmlns="{V1}" version="1.00" lang="en"/>'.encode(), schema_mode="warn")


def test_unknown_version_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="3.0"):
        classify(parse_untrusted(f'<IODEF-Document xmlns="{V2}"/>'.encode()), "3.0")
