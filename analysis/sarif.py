"""SARIF 2.1.0 rendering of lint results (sans-I/O): one run, the rule catalogue, results.

Each result carries its JSON pointer twice: as a logical location (for viewers) and in the
property bag (for scripts), next to what the observed traffic confirms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mirrorscope.analysis.speclint_rules import RULES, LintRule
from mirrorscope.analysis.speclint_walk import LintResult

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                    "sarif-schema-2.1.0.json")
# GitHub code scanning ranks security results by this property (0.0-10.0).
_SECURITY_SEVERITY = {"error": "8.0", "warning": "5.0", "note": "2.0"}


def _rule_descriptor(rule: LintRule) -> dict[str, object]:
    help_text = f"{rule.explanation}\n\nRemediation: {rule.remediation}"
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.explanation},
        "help": {"text": help_text,
                 "markdown": f"{rule.explanation}\n\n**Remediation:** {rule.remediation}\n\n"
                             f"OWASP API Security Top 10: [{rule.owasp}]({rule.help_uri})"},
        "helpUri": rule.help_uri,
        "defaultConfiguration": {"level": rule.level},
        "properties": {"tags": ["security", "openapi", f"owasp-{rule.owasp}"],
                       "security-severity": _SECURITY_SEVERITY[rule.level]},
    }


def _result(result: LintResult, artifact_uri: str, rule_index: int) -> dict[str, object]:
    physical: dict[str, object] = {"artifactLocation": {"uri": artifact_uri}}
    if result.line is not None and result.line >= 1:
        physical["region"] = {"startLine": result.line}
    message = result.message
    if result.traffic_evidence:
        message += " Confirmed by traffic: " + " ".join(result.traffic_evidence)
    fingerprint = hashlib.sha256(f"{result.rule_id}\0{result.pointer}".encode()).hexdigest()
    return {
        "ruleId": result.rule_id,
        "ruleIndex": rule_index,
        "level": result.level,
        "message": {"text": message},
        "locations": [{
            "physicalLocation": physical,
            "logicalLocations": [{"fullyQualifiedName": result.pointer or "/",
                                  "kind": "member"}],
        }],
        "partialFingerprints": {"openapiPointer/v1": fingerprint[:32]},
        "properties": {
            "jsonPointer": result.pointer,
            "operations": [f"{method} {path}" for method, path in result.operations],
            "field": result.field_path,
            "observedInTraffic": result.observed_in_traffic,
            "observedRequests": result.observed_requests,
            "confirmedByTraffic": result.confirmed_by_traffic,
            "trafficEvidence": list(result.traffic_evidence),
        },
    }


def render_sarif(results: Sequence[LintResult], artifact_uri: str, *, tool_version: str,
                 traffic_checked: bool = False) -> dict[str, object]:
    """A SARIF 2.1.0 log (as a dict) for one lint run over one spec file."""
    index = {rule.id: i for i, rule in enumerate(RULES)}
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "mirrorscope-lint",
                "fullName": "mirrorscope OpenAPI security lint",
                "version": tool_version,
                "rules": [_rule_descriptor(rule) for rule in RULES],
            }},
            "artifacts": [{"location": {"uri": artifact_uri}}],
            "results": [_result(r, artifact_uri, index[r.rule_id]) for r in results],
            "properties": {"trafficChecked": traffic_checked},
        }],
    }
