"""postwatch: catch compromised Postfix/Dovecot accounts from the mail log, and stop them."""

__version__ = "0.1.0"
