"""Documented Postfix defaults, for audits of saved ``postconf -n`` output.

``postconf -n`` prints only the settings that differ from the defaults.  When postconf
can be run, the audit asks it (``postconf -d``); when only saved files are given, the
values below stand in.  They are the defaults of Postfix 3.7, as ``postconf -d`` prints
them (unexpanded), for the parameters the checks read; the test suite compares them with
the installed postconf.  ``mynetworks`` is left out on purpose: its default is computed
from the machine's interfaces, so the checks judge ``mynetworks_style`` instead.
"""

from __future__ import annotations

from types import MappingProxyType

DOCUMENTED_VERSION = "3.7"

DOCUMENTED_DEFAULTS = MappingProxyType(
    {
        "anvil_rate_time_unit": "60s",
        "authorized_submit_users": "static:anyone",
        "cleanup_service_name": "cleanup",
        "compatibility_level": "0",
        "default_process_limit": "100",
        "disable_vrfy_command": "no",
        "header_checks": "",
        "inet_interfaces": "all",
        "local_header_rewrite_clients": "permit_inet_interfaces",
        "maillog_file": "",
        "maillog_file_rotate_suffix": "%Y%m%d-%H%M%S",
        "mynetworks_style": "${{$compatibility_level} <level {2} ? {subnet} : {host}}",
        "non_smtpd_milters": "",
        "receive_override_options": "",
        "smtpd_client_auth_rate_limit": "0",
        "smtpd_client_message_rate_limit": "0",
        "smtpd_client_recipient_rate_limit": "0",
        "smtpd_client_restrictions": "",
        "smtpd_data_restrictions": "",
        "smtpd_delay_reject": "yes",
        "smtpd_end_of_data_restrictions": "",
        "smtpd_enforce_tls": "no",
        "smtpd_helo_required": "no",
        "smtpd_helo_restrictions": "",
        "smtpd_log_access_permit_actions": "",
        "smtpd_milters": "",
        "smtpd_recipient_restrictions": "",
        "smtpd_relay_restrictions": (
            "${{$compatibility_level} <level {1} ? {} : "
            "{permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}"
        ),
        "smtpd_restriction_classes": "",
        "smtpd_sasl_auth_enable": "no",
        "smtpd_sender_login_maps": "",
        "smtpd_sender_restrictions": "",
        "smtpd_service_name": "smtpd",
        "smtpd_tls_auth_only": "no",
        "smtpd_tls_mandatory_protocols": ">=TLSv1",
        "smtpd_tls_protocols": ">=TLSv1",
        "smtpd_tls_security_level": "",
        "smtpd_tls_wrappermode": "no",
        "smtpd_use_tls": "no",
    }
)
