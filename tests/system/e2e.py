"""End-to-end harness: a real Postfix and Dovecot on loopback, and postwatch watching them.

::

    test client --XCLIENT--> Postfix :25 / :submission --SASL--> Dovecot (auth socket only)
                                  |   check_sasl_access map        deny passdb
                                  |   relayhost [127.0.0.1]:sink
                                  v
                             maillog ------> postwatch watch --> map, deny file, hold,
                                                                 ban log, json:// receiver

Everything listens on 127.0.0.1 only and nothing leaves the machine.  The pieces:

- ``mail_system``: :class:`MailSystem` starts and stops the daemons (each by its own pid),
  writes postwatch's config and reads back what Postfix and Dovecot enforce;
- ``receivers``: the relay sink Postfix delivers to (greylisting chosen domains) and the
  HTTP server Apprise's ``json://`` notifications reach;
- ``mail_traffic``: clients presented by XCLIENT, ordinary mail from home, spam bursts from
  a botnet;
- ``postwatch_process``: :class:`Postwatch` runs ``postwatch watch`` as a subprocess and
  reads its alerts.

The same pieces serve the tests and ``bench/e2e_latency.py``, which import them from here.
"""

from system.mail_system import MailSystem, Programs
from system.mail_traffic import (
    SPAM_DOMAINS,
    Attempt,
    Burst,
    Client,
    attack,
    attacker_clients,
    home_client,
    ordinary_mail,
    spam_recipients,
)
from system.postwatch_process import Postwatch

__all__ = [
    "SPAM_DOMAINS",
    "Attempt",
    "Burst",
    "Client",
    "MailSystem",
    "Postwatch",
    "Programs",
    "attack",
    "attacker_clients",
    "home_client",
    "ordinary_mail",
    "spam_recipients",
]
