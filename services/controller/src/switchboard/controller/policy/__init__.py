"""The routing policy: which calls are accepted (by which agent), rejected or referred.

A policy is agents, ordered rules (the first whose ``when`` matches decides) and a required default. A
rule's ``when`` can look at the dialled number and the caller (the user parts of the SIP ``To``/``From``
URIs: exact, prefix, regex, E.164 country), any SIP header (present/absent, exact, prefix, regex) and time
windows (days and hours in an IANA time zone, minus holidays). Its action is exactly one of ``accept`` (a
named agent), ``reject`` (a SIP status code) or ``refer`` (a ``tel:``, ``sip:`` or ``sips:`` target). A
rule may have a capacity, ``max_live_calls``: when that many calls it accepted are live, its ``when_full``
outcome applies instead (reject 486 unless given); the capacity check itself lives in the decider, since
it needs the live counts the controller keeps. Every accepted call has a maximum duration
(``max_call_duration_s``: the rule's, else the policy's, 4 h by default): the session worker hangs up a
call that reaches it, and capacity stops counting a call whose end was never recorded once it has run out.

``model.py`` the msgspec Structs a policy converts to (`Policy`, `Rule`, `Agent`, …), `BUSY`, the
duration constants and `max_call_duration` · ``match.py`` the facts of a call (`CallFacts`,
`facts_from_incoming`) and matching them: text, numbers, headers, hours, `rule_matches`, `matching_rule`
(pure; time is an argument) · ``check.py`` semantic validation, every problem at once (`validate`,
`PolicyError`), and the warnings of a valid policy (`check_warnings`: deprecated or unknown models and
voices, from the lists in ``model.py``; pure) · ``load.py`` YAML with line numbers and duplicate keys,
msgspec's errors made readable, each field on its own (`parse_policy`, `check_policy` with the warnings),
the built-in example and `load_policy`, the package's only file reading.

`parse_policy` reports every problem it can find at once, each naming the file, line, rule and field::

    policy.yaml:14 rules[2] (after-hours): refer.target_uri: must start with tel:, sip: or sips:
"""

from switchboard.controller.policy.check import PolicyError, validate
from switchboard.controller.policy.load import (
    POLICY_MAX_BYTES,
    CheckedPolicy,
    builtin_policy_text,
    check_policy,
    load_policy,
    parse_policy,
    read_policy_text,
)
from switchboard.controller.policy.match import (
    MATCH_MAX_CHARS,
    CallFacts,
    facts_from_incoming,
    header_matches,
    in_hours,
    matching_rule,
    number_matches,
    rule_matches,
    text_matches,
)
from switchboard.controller.policy.model import (
    BUSY,
    DEFAULT_MAX_CALL_DURATION_S,
    MAX_CALL_DURATION_RANGE_S,
    REJECT_NAMES,
    WEEKDAYS,
    Accept,
    Agent,
    Audio,
    AudioFormat,
    AudioInput,
    AudioOutput,
    HeaderMatch,
    Hours,
    NumberMatch,
    Outcome,
    Policy,
    Refer,
    Reject,
    Rule,
    SemanticVad,
    ServerVad,
    TextMatch,
    Tool,
    Transcription,
    When,
    max_call_duration,
)

__all__ = [
    "BUSY",
    "DEFAULT_MAX_CALL_DURATION_S",
    "MATCH_MAX_CHARS",
    "MAX_CALL_DURATION_RANGE_S",
    "POLICY_MAX_BYTES",
    "REJECT_NAMES",
    "WEEKDAYS",
    "Accept",
    "Agent",
    "Audio",
    "AudioFormat",
    "AudioInput",
    "AudioOutput",
    "CallFacts",
    "CheckedPolicy",
    "HeaderMatch",
    "Hours",
    "NumberMatch",
    "Outcome",
    "Policy",
    "PolicyError",
    "Refer",
    "Reject",
    "Rule",
    "SemanticVad",
    "ServerVad",
    "TextMatch",
    "Tool",
    "Transcription",
    "When",
    "builtin_policy_text",
    "check_policy",
    "facts_from_incoming",
    "header_matches",
    "in_hours",
    "load_policy",
    "matching_rule",
    "max_call_duration",
    "number_matches",
    "parse_policy",
    "read_policy_text",
    "rule_matches",
    "text_matches",
    "validate",
]
