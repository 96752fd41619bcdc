"""Every finding kind detection emits: its OWASP API Security Top 10 (2023) category,
default severity and remediation text.

The remediation is a template: ``{endpoint}`` and ``{where}`` (a parameter or header) are
filled in per finding so the advice says what to fix *and where*.  Injection has no category
of its own in the 2023 list; like most vendors we file it under API8 (Security
Misconfiguration: "the API is vulnerable to injection when input is not validated").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What one finding kind means."""

    owasp: str
    severity: str
    title: str
    remediation: str


SEVERITIES = ("info", "low", "medium", "high", "critical")

CATALOG: dict[str, KindInfo] = {
    "attack.sqli": KindInfo(
        "API8:2023", "high", "SQL injection attempt",
        "Use parameterised queries (bound parameters, never string concatenation) for "
        "{where} in {endpoint}; validate it against an allow-list type/format at the API "
        "boundary and run the database account with least privilege. Check the response "
        "and database logs for signs that the attempt succeeded."),
    "attack.xss": KindInfo(
        "API8:2023", "medium", "Cross-site scripting payload",
        "Validate {where} in {endpoint} against its expected format and HTML-encode it "
        "wherever it is rendered; return JSON with Content-Type application/json and "
        "X-Content-Type-Options: nosniff, and set a Content-Security-Policy on HTML pages."),
    "attack.path_traversal": KindInfo(
        "API8:2023", "high", "Path traversal attempt",
        "Never build file paths from {where} in {endpoint}: map it to an allow-listed "
        "identifier, canonicalise the resolved path and check it stays under the intended "
        "base directory; reject '..', encoded slashes and NUL bytes early."),
    "attack.command_injection": KindInfo(
        "API8:2023", "critical", "OS command injection attempt",
        "Do not pass {where} from {endpoint} to a shell: call programs with an argument "
        "vector (no shell), allow-list the accepted values, and run the service without "
        "shell access or outbound network rights it does not need."),
    "attack.ssrf": KindInfo(
        "API7:2023", "high", "Server-side request forgery attempt",
        "Fetch URLs taken from {where} in {endpoint} only through an allow-list of schemes "
        "and destination hosts; resolve the host and refuse private, loopback, link-local "
        "and metadata addresses (169.254.169.254) after every redirect; disable redirects "
        "where possible."),
    "attack.template_injection": KindInfo(
        "API8:2023", "high", "Template / server-side include injection attempt",
        "Never evaluate {where} from {endpoint} as a template or SSI directive: render user "
        "input only as data (autoescaped variables), use a sandboxed template engine and "
        "disable server-side includes for user-supplied content."),
    "attack.jndi_injection": KindInfo(
        "API8:2023", "critical", "JNDI lookup injection (Log4Shell-style)",
        "Upgrade Log4j to >= 2.17.1 (or remove the JndiLookup class), set "
        "log4j2.formatMsgNoLookups=true on older builds, and block outbound LDAP/RMI from "
        "the service; the payload arrived in {where} of {endpoint}."),
    "attack.crlf_injection": KindInfo(
        "API8:2023", "medium", "CRLF / header injection attempt",
        "Reject or encode CR and LF in {where} of {endpoint} before it is written into "
        "headers, redirects or logs; use the framework's header API, which refuses "
        "line breaks."),
    "attack.bola_enumeration": KindInfo(
        "API1:2023", "high", "Object id enumeration (BOLA)",
        "Enforce object-level authorization in {endpoint}: check on every request that the "
        "caller owns or may read the object whose id it sent, use unpredictable ids (UUIDs) "
        "and rate-limit lookups per principal."),
    "attack.credential_stuffing": KindInfo(
        "API2:2023", "high", "Credential stuffing",
        "Protect {endpoint}: rate-limit failed logins per client address and per account, "
        "add progressive delays or CAPTCHA after failures, check passwords against breached "
        "lists and offer MFA; alert the accounts that were targeted."),
    "attack.brute_force": KindInfo(
        "API2:2023", "high", "Password brute force",
        "Lock out or throttle the targeted account on {endpoint} after repeated failures, "
        "rate-limit per client address, and require MFA for the account."),
    "attack.scraping": KindInfo(
        "API4:2023", "medium", "Scraping / excessive consumption",
        "Apply per-client and per-principal rate limits and response-size quotas to "
        "{endpoint}; require authentication for bulk reads and cap pagination."),
    "attack.excessive_page_size": KindInfo(
        "API4:2023", "medium", "Excessive page size requested",
        "Validate {where} in {endpoint} server-side against a maximum page size and reject "
        "(or clamp) larger values; never let the client choose unbounded result sizes."),
    "attack.recon": KindInfo(
        "API9:2023", "medium", "Endpoint reconnaissance (404/405 burst)",
        "Block or throttle clients producing bursts of 404/405 responses, remove unused and "
        "legacy routes, keep the API inventory current and avoid revealing framework "
        "details in error pages."),
    "attack.request_smuggling": KindInfo(
        "API8:2023", "high", "HTTP desync / request smuggling",
        "Make every hop parse framing the same way: reject requests with both "
        "Content-Length and Transfer-Encoding, duplicate or invalid lengths and obsolete "
        "line folding at the edge proxy, and normalise requests before forwarding."),
    "attack.tcp_evasion": KindInfo(
        "API8:2023", "medium", "TCP-level evasion (conflicting data, forged resets)",
        "Investigate the source: conflicting retransmissions and forged resets are used to "
        "evade inspection; normalise traffic (scrubbing) in front of the API and alert on "
        "repeated occurrences."),
    "attack.decompression_bomb": KindInfo(
        "API4:2023", "medium", "Decompression bomb",
        "Cap the decompressed size and ratio of bodies accepted by {endpoint}, and reject "
        "nested content encodings."),
    "attack.forged_forwarding": KindInfo(
        "API8:2023", "medium", "Forged forwarding headers (X-Forwarded-For / Forwarded)",
        "Take the client address of {endpoint} only from forwarding headers your own proxies "
        "add: configure the trusted proxy list and walk {where} right to left, stopping at the "
        "first untrusted hop; make the edge proxy overwrite client-supplied X-Forwarded-For, "
        "Forwarded and X-Real-IP; never grant access because a header claims an internal "
        "address; encode the header before logging or displaying it."),
    "auth.new_network": KindInfo(
        "API2:2023", "low", "Credential used from a new network",
        "Confirm with the owner of this principal that the use of {endpoint} from the new "
        "network is theirs; if not, revoke the token and its refresh tokens. Bind sessions "
        "to client context where possible, keep token lifetimes short and require MFA or "
        "re-authentication when a credential appears from an unusual network."),
    "auth.token_sharing": KindInfo(
        "API2:2023", "high", "Credential used from many networks at once",
        "One credential is in use from many networks within minutes: it is shared, leaked "
        "or stolen. Revoke it, issue per-user/per-device credentials, bind tokens to the "
        "client (DPoP, mTLS) and rate-limit per principal."),
    "ml.transaction_outlier": KindInfo(
        "API8:2023", "medium", "Request unlike the endpoint's baseline",
        "Review the request to {endpoint}: the explanation lists which features deviated. "
        "Validate {where} against a strict schema (type, length, character set, allowed "
        "values) so malformed or hostile input is refused at the API boundary."),
    "ml.client_outlier": KindInfo(
        "API4:2023", "medium", "Client behaviour unlike the baseline",
        "Review this client's activity (rate, error ratio, endpoints, ids): the explanation "
        "lists the window features that deviated. Rate-limit per client and per principal, "
        "and block it if the activity is not legitimate."),
    "misconfig.stack_trace": KindInfo(
        "API8:2023", "medium", "Stack trace in a response",
        "Return generic error bodies from {endpoint}: catch exceptions in a global handler, "
        "log the details server-side and disable debug mode in production."),
    "misconfig.sql_error": KindInfo(
        "API8:2023", "high", "Database error in a response",
        "Stop {endpoint} from returning database error messages: handle errors generically "
        "and investigate the query that failed, since a visible SQL error often means "
        "injectable input reached it."),
    "misconfig.missing_security_headers": KindInfo(
        "API8:2023", "low", "Missing security headers",
        "Add the missing headers to responses of {endpoint} (at the application or the "
        "reverse proxy): X-Content-Type-Options: nosniff, and for HTML a "
        "Content-Security-Policy with frame-ancestors (or X-Frame-Options)."),
    "misconfig.cors_wildcard_credentials": KindInfo(
        "API8:2023", "high", "CORS wildcard with credentials",
        "Configure CORS for {endpoint} with an explicit allow-list of origins; never combine "
        "Access-Control-Allow-Origin: * (or a reflected arbitrary Origin) with "
        "Access-Control-Allow-Credentials: true."),
    "misconfig.version_banner": KindInfo(
        "API8:2023", "low", "Server version disclosed",
        "Remove version details from the {where} header of {endpoint} (server_tokens off, "
        "disable X-Powered-By) so attackers cannot match the exact software version to "
        "known vulnerabilities."),
}

# Promoted protocol anomalies: which finding kind each becomes.
ANOMALY_KINDS: dict[str, str] = {
    "http.smuggling_te_cl": "attack.request_smuggling",
    "http.cl_conflict": "attack.request_smuggling",
    "http.bad_content_length": "attack.request_smuggling",
    "http.smuggling_obs_fold": "attack.request_smuggling",
    "http.obs_fold": "attack.request_smuggling",
    "http.bad_transfer_encoding": "attack.request_smuggling",
    "http.chunk_line_lf": "attack.request_smuggling",
    "http.bad_chunk_size": "attack.request_smuggling",
    "http.decompression_bomb": "attack.decompression_bomb",
    "tcp.overlap_mismatch": "attack.tcp_evasion",
    "tcp.ttl_inconsistent": "attack.tcp_evasion",
    "tcp.rst_injection": "attack.tcp_evasion",
}


def info(kind: str) -> KindInfo:
    """The catalogue entry of a kind (a DetectionError-free lookup: unknown kinds get API8)."""
    return CATALOG.get(kind) or KindInfo("API8:2023", "medium", kind, "Review the evidence.")


def remediation(kind: str, endpoint: str | None, where: str | None) -> str:
    """The remediation text of a kind, with the endpoint and parameter filled in."""
    return info(kind).remediation.format(endpoint=endpoint or "the affected endpoints",
                                         where=where or "the affected input")


def max_severity(a: str, b: str) -> str:
    """The more severe of two severities."""
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b
