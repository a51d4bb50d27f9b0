"""postwatch audit: reading postconf output, effective values per service, and the checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, require_program

from postwatch.audit import Severity, audit, load_live, load_saved, parse_main, parse_master
from postwatch.audit import postconf as postconf_module
from postwatch.audit.command import audit_command
from postwatch.audit.defaults import DOCUMENTED_DEFAULTS
from postwatch.audit.expansion import expand, split_list
from postwatch.audit.hygiene import allowed_protocols
from postwatch.audit.networks import assess_entry
from postwatch.audit.render import render_text
from postwatch.audit.settings import PostfixConfig
from postwatch.errors import AuditError, ConfigError

POSTCONF_FIXTURES = FIXTURES / "postconf"
THREAD_N = POSTCONF_FIXTURES / "relay-thread" / "postconf-n.txt"
THREAD_M = POSTCONF_FIXTURES / "relay-thread" / "postconf-M.txt"
HARDENED = POSTCONF_FIXTURES / "hardened"
DEBIAN_SHARE = Path("/usr/share/postfix")
# What the Debian postinst sets on a fresh "Internet Site" install (debconf defaults).
DEBIAN_POSTINST_SETTINGS = (
    "smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
    "myhostname=mail.example.org",
    "alias_maps=hash:/etc/aliases",
    "alias_database=hash:/etc/aliases",
    "mydestination=$myhostname, localhost.localdomain, localhost",
    "relayhost=",
    "mynetworks=127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
    "mailbox_size_limit=0",
    "recipient_delimiter=+",
    "inet_interfaces=all",
    "inet_protocols=all",
)
STOCK_SMTP = "smtp      inet  n       -       y       -       -       smtpd\n"


def config_from(main: str, master: str = STOCK_SMTP) -> PostfixConfig:
    """A config from main.cf and master.cf text, on the documented defaults."""
    return PostfixConfig(
        parse_main(main, "main.cf"),
        DOCUMENTED_DEFAULTS,
        parse_master(master, "master.cf"),
        defaults_source="documented",
        master_source="master.cf",
    )


def ids(config: PostfixConfig) -> dict[str, Severity]:
    return {finding.id: finding.severity for finding in audit(config).findings}


@pytest.fixture(scope="module")
def thread_report():
    return audit(load_saved(str(THREAD_N), str(THREAD_M)))


@pytest.fixture(scope="module")
def postconf_program() -> str:
    return require_program("postconf", "/usr/sbin/postconf")


# --- the configuration from the admin thread ------------------------------------------


def test_thread_top_finding_is_broad_mynetworks(thread_report):
    """The thread's mynetworks (private /16s, a container network, link-local) comes first."""
    top = thread_report.findings[0]
    assert (top.id, top.severity, top.setting, top.service) == (
        "mynetworks-broad",
        Severity.HIGH,
        "mynetworks",
        None,
    )
    assert "172.18.0.0/16 (a container network" in top.why
    assert "[fe80::]/64 (link-local" in top.why
    assert top.fix == "postconf -e 'mynetworks = 127.0.0.0/8 [::1]/128'"


def test_thread_flags_the_other_known_problems(thread_report):
    """AUTH on port 25, no lock hook, 5000 processes and open sendmail are all reported."""
    found = {finding.id: finding for finding in thread_report.findings}
    assert found["sasl-on-port-25"].affects == ("smtpd/pass",)
    assert found["sasl-lock-hook-missing"].affects == (
        "smtpd/pass",
        "submission/inet",
        "smtps/inet",
    )
    assert found["process-limit-high"].value == "5000"
    assert found["submit-users-anyone"].severity == Severity.MEDIUM
    assert found["pickup-header-checks-off"].fix == (
        "postconf -PX pickup/fifo/receive_override_options"
    )
    assert "sender-login-unchecked" not in found  # the thread checks sender ownership


def test_thread_policy_fix_moves_only_the_limiting_policy(thread_report):
    """The SPF policy stays after permit_sasl_authenticated; the other one moves ahead."""
    finding = next(f for f in thread_report.findings if f.id == "policy-after-auth-permit")
    assert "policyd-spf" not in finding.why
    assert finding.fix.startswith(
        "postconf -e 'smtpd_recipient_restrictions = check_policy_service "
        "inet:localhost:65265, permit_sasl_authenticated, permit_mynetworks, "
        "reject_unauth_destination, check_policy_service unix:private/policyd-spf"
    )


def test_thread_smtpd_limits_on_delivery_services(thread_report):
    """smtpd rate limits set with -o on smtp(8) client services are reported as no-ops."""
    finding = next(
        f
        for f in thread_report.findings
        if f.id == "client-service-smtpd-limit" and f.setting == "smtpd_client_message_rate_limit"
    )
    assert finding.service is not None and "icloud-smtp/unix" in finding.service
    assert "postconf -PX icloud-smtp/unix/smtpd_client_message_rate_limit" in finding.fix


def test_thread_services_get_their_roles():
    """postscreen's pass service is port 25, a loopback listener is local, 587 is submission."""
    config = load_saved(str(THREAD_N), str(THREAD_M))
    roles = {entry.service.label: entry.role for entry in config.smtpd}
    assert roles == {
        "smtpd/pass": "port25",
        "submission/inet": "submission",
        "smtps/inet": "smtps",
        "127.0.0.1:10025/inet": "local",
    }


def test_thread_overrides_apply_per_service():
    """A -o override wins on its service only; pipe arguments are not taken for overrides."""
    config = load_saved(str(THREAD_N), str(THREAD_M))
    submission = config.service("submission", "inet")
    maildrop = config.service("maildrop", "unix")
    assert submission is not None and maildrop is not None
    assert config.restrictions("smtpd_relay_restrictions", submission) == [
        "permit_sasl_authenticated",
        "reject",
    ]
    assert config.restrictions("smtpd_relay_restrictions")[0] == "permit_mynetworks"
    assert maildrop.overrides == ()
    assert maildrop.args[0] == "flags=DRhu"


def test_human_report_is_sorted_worst_first(thread_report):
    """The table lists one block per finding, highest severity first, mynetworks on top."""
    labels = {level.label for level in Severity}
    heads = [
        line for line in render_text(thread_report).splitlines() if line.split(" ")[0] in labels
    ]
    assert len(heads) == len(thread_report.findings)
    ranks = [Severity.parse(line.split(" ")[0]) for line in heads]
    assert ranks == sorted(ranks, reverse=True)
    assert heads[0].startswith("high      mynetworks-broad            main.cf: mynetworks = ")


# --- reading -----------------------------------------------------------------------------


def test_master_braced_override_and_indirection():
    """``-o { name = value }`` and ``-o name=$main_param`` resolve in the service's context."""
    config = config_from(
        "mua_sender_restrictions = check_sasl_access hash:/x, reject_sender_login_mismatch\n",
        "submission inet n - y - - smtpd\n"
        "  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n"
        "  -o smtpd_sender_restrictions=$mua_sender_restrictions\n",
    )
    submission = config.service("submission", "inet")
    assert config.restrictions("smtpd_client_restrictions", submission) == [
        "permit_sasl_authenticated",
        "reject",
    ]
    assert config.restrictions("smtpd_sender_restrictions", submission) == [
        "check_sasl_access",
        "hash:/x",
        "reject_sender_login_mismatch",
    ]
    assert config.effective("smtpd_sender_restrictions", submission).service == "submission/inet"


def test_expansion_of_compatibility_conditionals():
    """The 3.6 default expressions pick subnet/host and the relay list by compatibility level."""
    for level, style, relay in (("0", "subnet", ""), ("3.6", "host", "permit_mynetworks")):
        config = config_from(f"compatibility_level = {level}\n")
        assert config.get("mynetworks_style") == style
        assert config.get("smtpd_relay_restrictions").startswith(relay)
    lookup = {"a": "x", "empty": "", "self": "$self"}.get
    assert expand("${a?{yes}:{no}} ${empty?{yes}:{no}} ${empty:fallback} $$a", lookup) == (
        "yes no fallback $a"
    )
    assert expand("$self", lookup) == "$self"  # a self-reference stops instead of looping
    assert split_list("a, b {c, d} e") == ["a", "b", "{c, d}", "e"]


def test_bad_main_line_names_file_and_line():
    """A line that is not 'name = value' raises ConfigError naming file and line."""
    with pytest.raises(ConfigError, match=r"^saved-n\.txt:3: expected 'name = value'"):
        parse_main("# comment\nbiff = no\nthis is not a setting\n", "saved-n.txt")


def test_bad_master_line_names_file_and_line():
    """A master.cf line with too few fields or an unknown type raises ConfigError."""
    with pytest.raises(ConfigError, match=r"^m\.txt:2: expected 8 master.cf fields"):
        parse_master("smtp inet n - y - - smtpd\nbroken line\n", "m.txt")
    with pytest.raises(ConfigError, match=r"^m\.txt:1: unknown service type 'tcp'"):
        parse_master("smtp tcp n - y - - smtpd\n", "m.txt")


def test_missing_master_output_falls_back_to_main_cf(thread_report):
    """Without -M output only main.cf is audited, and the report says so."""
    report = audit(load_saved(str(THREAD_N), None))
    assert report.findings[0].id == "mynetworks-broad"
    assert any("no postconf -M output given" in note for note in report.notes)
    assert "client-service-smtpd-limit" not in {f.id for f in report.findings}


# --- checks on small configurations -----------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "severity", "reason"),
    [
        ("0.0.0.0/0", Severity.CRITICAL, "Internet"),
        ("[::ffff:127.0.0.0]/104", None, "loopback"),
        ("203.0.113.5", None, "single host"),
        ("172.17.0.0/16", Severity.HIGH, "container"),
        ("10.0.0.0/8", Severity.HIGH, "private"),
        ("192.168.1.0/24", Severity.MEDIUM, "private"),
        ("[fe80::]/64", Severity.HIGH, "link-local"),
        ("1.2.3.0/24", Severity.HIGH, "public"),
        ("1.2.0.0/16", Severity.CRITICAL, "public"),
        ("hash:/etc/postfix/network_table", Severity.INFO, "table"),
        ("!192.168.0.1", None, "exclusion"),
    ],
)
def test_mynetworks_entries(entry, severity, reason):
    """Each mynetworks entry is rated by how many and which hosts it trusts."""
    risk = assess_entry(entry)
    assert risk.severity == severity
    assert reason in risk.reason


def test_unset_mynetworks_at_old_compatibility_trusts_subnets():
    """No mynetworks and compatibility level < 2 means mynetworks_style = subnet: high."""
    found = ids(config_from("myhostname = mx.example.org\n"))
    assert found["mynetworks-style"] == Severity.HIGH
    assert "mynetworks-style" not in ids(config_from("compatibility_level = 2\n"))


def test_permit_before_guard_is_an_open_relay():
    """An unconditional permit ahead of reject_unauth_destination is a critical open relay."""
    config = config_from(
        "compatibility_level = 3.6\n"
        "smtpd_relay_restrictions = permit, reject_unauth_destination\n"
        "smtpd_recipient_restrictions = permit_mynetworks\n"
    )
    report = audit(config)
    assert (report.findings[0].id, report.findings[0].severity) == ("open-relay", Severity.CRITICAL)


def test_no_guard_at_all_is_reported():
    """Relay lists without any guard make smtpd exit; the audit says so."""
    config = config_from("smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit\n")
    assert ids(config)["relay-guard-missing"] == Severity.HIGH


def test_login_check_after_permit_is_unchecked():
    """reject_sender_login_mismatch after permit_sasl_authenticated never runs: high, moved."""
    config = config_from(
        "compatibility_level = 3.6\n"
        "smtpd_tls_security_level = may\nsmtpd_tls_auth_only = yes\n"
        "smtpd_sender_login_maps = hash:/etc/postfix/login\n",
        "submission inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes "
        "-o smtpd_sender_restrictions=permit_sasl_authenticated,reject_sender_login_mismatch\n",
    )
    finding = next(f for f in audit(config).findings if f.id == "sender-login-unchecked")
    assert finding.severity == Severity.HIGH
    assert finding.service == "submission/inet"
    assert finding.fix == (
        "postconf -P 'submission/inet/smtpd_sender_restrictions="
        "reject_sender_login_mismatch, permit_sasl_authenticated'"
    )


def test_auth_before_starttls_on_an_overriding_service():
    """smtpd_tls_auth_only = no set with -o is reported on that service, fixed with -P."""
    config = config_from(
        "smtpd_tls_security_level = may\nsmtpd_tls_auth_only = yes\n",
        "submission inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=no\n",
    )
    finding = next(f for f in audit(config).findings if f.id == "auth-without-tls")
    assert (finding.severity, finding.service) == (Severity.MEDIUM, "submission/inet")
    assert finding.fix == "postconf -P submission/inet/smtpd_tls_auth_only=yes"


def test_pickup_without_milter_or_header_checks():
    """Mail from sendmail that no milter and no header_checks sees is medium."""
    master = STOCK_SMTP + "pickup unix n - y 60 1 pickup\ncleanup unix n - y - 0 cleanup\n"
    assert ids(config_from("biff = no\n", master))["pickup-uninspected"] == Severity.MEDIUM
    inspected = config_from("non_smtpd_milters = inet:127.0.0.1:11332\n", master)
    assert "pickup-uninspected" not in ids(inspected)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (">=TLSv1", ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
        ("!SSLv2, !SSLv3", ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
        (">=TLSv1.2", ["TLSv1.2", "TLSv1.3"]),
        (">=0x0303 <=TLSv1.2", ["TLSv1.2"]),
        ("TLSv1.2:TLSv1.3", ["TLSv1.2", "TLSv1.3"]),
        ("", ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
    ],
)
def test_tls_protocol_lists(value, allowed):
    """Both the >= bound syntax and the ! exclusion syntax are understood."""
    assert allowed_protocols(value) == allowed


def test_control_characters_are_escaped_in_the_table():
    """A value with an escape character cannot reach the terminal raw."""
    config = config_from("mynetworks = 10.0.0.0/8\nmyhostname = a\x1b[31mb\n")
    text = render_text(audit(config))
    assert "\x1b" not in text


# --- the command -----------------------------------------------------------------------


def test_cli_json_and_exit_code():
    """--json prints one object; a finding at --fail-on exits 1, none exits 0."""
    runner = CliRunner()
    args = ["--postconf-n", str(THREAD_N), "--postconf-M", str(THREAD_M), "--json"]
    result = runner.invoke(audit_command, args)
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["findings"][0]["id"] == "mynetworks-broad"
    assert data["counts"]["high"] == 1
    assert data["defaults"].startswith("documented defaults")
    assert runner.invoke(audit_command, [*args, "--fail-on", "critical"]).exit_code == 0


def test_cli_bad_file_is_a_one_line_error(tmp_path):
    """A malformed saved file gives one line naming file and line, exit 2, no traceback."""
    bad = tmp_path / "n.txt"
    bad.write_text("biff = no\n<html>\n")
    result = CliRunner().invoke(audit_command, ["--postconf-n", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"postwatch: error: {bad}:2: expected 'name = value', found '<html>'"
    )


def test_cli_usage_errors():
    """-M output without -n output, or saved files with -c, are usage errors (exit 2)."""
    runner = CliRunner()
    assert runner.invoke(audit_command, ["--postconf-M", str(THREAD_M)]).exit_code == 2
    both = ["-c", str(HARDENED), "--postconf-n", str(THREAD_N)]
    assert runner.invoke(audit_command, both).exit_code == 2


def test_missing_postconf_without_files_is_a_clear_error(monkeypatch):
    """With no postconf and nothing saved, the audit stops with an AuditError that says why."""
    monkeypatch.setattr(postconf_module, "find_postconf", lambda program=None: None)
    with pytest.raises(AuditError, match="postconf not found"):
        load_live()


def test_config_dir_without_postconf_is_read_directly(monkeypatch):
    """Without postconf, -c DIR parses main.cf and master.cf; the hardened one stays clean."""
    monkeypatch.setattr(postconf_module, "find_postconf", lambda program=None: None)
    report = audit(load_live(str(HARDENED)))
    assert report.worst() == Severity.INFO
    assert "read" in report.notes[0] and "directly" in report.notes[0]


# --- the real postconf -------------------------------------------------------------------


@pytest.mark.system
def test_documented_defaults_match_postconf(postconf_program):
    """The built-in defaults table agrees with the installed postconf -d."""
    done = subprocess.run(
        [postconf_program, "-d", *DOCUMENTED_DEFAULTS], capture_output=True, text=True, check=True
    )
    assert parse_main(done.stdout, "postconf -d") == dict(DOCUMENTED_DEFAULTS)


@pytest.fixture
def debian_default(tmp_path, postconf_program) -> Path:
    """The main.cf and master.cf a fresh Debian install writes, built from the package."""
    sources = [DEBIAN_SHARE / name for name in ("main.cf.debian", "main.cf.tls", "master.cf.dist")]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        pytest.fail(f"the Debian postfix package files are missing: {missing}")
    main = sources[0].read_text() + sources[1].read_text()
    (tmp_path / "main.cf").write_text(main)
    shutil.copy(sources[2], tmp_path / "master.cf")
    subprocess.run(
        [postconf_program, "-c", str(tmp_path), "-e", *DEBIAN_POSTINST_SETTINGS], check=True
    )
    return tmp_path


@pytest.mark.system
def test_debian_default_configuration(debian_default, postconf_program):
    """Debian's defaults relay for nobody but leave sendmail open and no brakes: medium."""
    report = audit(load_live(str(debian_default), postconf_program))
    found = {finding.id: finding.severity for finding in report.findings}
    assert report.worst() == Severity.MEDIUM
    assert found["submit-users-anyone"] == Severity.MEDIUM
    assert found["pickup-uninspected"] == Severity.MEDIUM
    assert found["no-rate-limit"] == Severity.LOW
    assert "mynetworks-broad" not in found
    assert "open-relay" not in found
    assert report.defaults_source.startswith("postconf -d (Postfix ")


@pytest.mark.system
def test_hardened_configuration_is_clean(postconf_program):
    """The hardened fixture passes real postconf without warnings and has only info findings."""
    checked = subprocess.run(
        [postconf_program, "-c", str(HARDENED), "-n"], capture_output=True, text=True
    )
    assert checked.returncode == 0 and checked.stderr == ""
    report = audit(load_live(str(HARDENED), postconf_program))
    assert report.worst() == Severity.INFO
    assert report.at_or_above(Severity.LOW) == ()


@pytest.mark.system
def test_saved_output_audits_like_the_live_config(tmp_path, postconf_program):
    """Saved postconf -n/-M output of a config gives the same findings as the live run."""
    for flag in ("-n", "-M"):
        done = subprocess.run(
            [postconf_program, "-c", str(HARDENED), flag],
            capture_output=True,
            text=True,
            check=True,
        )
        (tmp_path / f"postconf{flag}.txt").write_text(done.stdout)
    saved = audit(load_saved(str(tmp_path / "postconf-n.txt"), str(tmp_path / "postconf-M.txt")))
    live = audit(load_live(str(HARDENED), postconf_program))
    assert saved.findings == live.findings


@pytest.mark.system
def test_cli_runs_real_postconf(debian_default, postconf_program):
    """-c DIR runs postconf and prints the table; Debian defaults pass the default --fail-on."""
    result = CliRunner().invoke(
        audit_command, ["-c", str(debian_default), "--postconf", postconf_program]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith("defaults:  postconf -d (Postfix ")
    assert "submit-users-anyone" in result.output


def test_maillog_file_without_postlogd():
    """maillog_file with no postlogd service in master.cf is medium, fixed with postconf -M."""
    config = config_from("maillog_file = /var/log/postfix.log\n")
    found = {finding.id: finding for finding in audit(config).findings}
    assert found["maillog-without-postlogd"].severity == Severity.MEDIUM
    assert found["maillog-without-postlogd"].fix.startswith("postconf -M 'postlog/unix-dgram=")
    assert found["maillog-file"].severity == Severity.INFO
    assert "/var/log/postfix.log.%Y%m%d-%H%M%S" in found["maillog-file"].why
