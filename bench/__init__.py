"""Synthetic but realistic Postfix/Dovecot traffic: benchmark logs, detection scenarios, demo.

Every line's wording is copied from real Postfix/Dovecot output; only the people, the
addresses and the timing are invented (seeded, deterministic).

- ``networks``    the address plan: client IP ranges whose country/ASN geoip2fast resolves
- ``remote``      remote mail servers (Gmail, Yahoo, Outlook ...) and their replies
- ``timeline``    time-ordered output, process IDs, queue IDs, anvil statistics
- ``traffic``     the server: authenticated submission, inbound mail, pickup
- ``delivery``    qmgr and the delivery agents: smtp, lmtp (with Dovecot's lines), bounces
- ``refusals``    sessions without mail: postscreen/smtpd rejects, failed SASL logins
- ``dovecot``     IMAP logins, logouts and failed logins
- ``population``  hosted accounts and their habits
- ``ordinary``    the ordinary traffic of a population, day by day
- ``episode``     what abuse episodes share: ground truth, a stolen login, its spam
- ``abuse``       the abuse episodes the detection issue names
- ``quiet_abuse`` quieter abuse: webmail, a home proxy, IMAP then SMTP, forged senders
- ``lookalikes``  accounts whose ordinary habits resemble abuse
- ``generate``    the benchmark log (``python -m bench.generate``)
- ``scenarios``   detection scenario logs with golden files, and the demo log
- ``run``         the benchmark runner (``python -m bench.run``)
"""
