"""Log sources: where raw lines come from, framed into :class:`~postwatch.records.LogLine`.

``files`` reads plain and compressed log files, rotation sets and stdin (replay);
``journal`` reads ``journalctl -o json`` output or runs journalctl.
"""

from postwatch.sources.files import (
    ReadStats,
    input_size,
    open_text,
    read_batches,
    read_file,
    read_lines,
    rotation_order,
)
from postwatch.sources.journal import (
    journal_entry,
    journalctl_command,
    read_journal_json,
    run_journal,
)

__all__ = [
    "ReadStats",
    "input_size",
    "journal_entry",
    "journalctl_command",
    "open_text",
    "read_batches",
    "read_file",
    "read_journal_json",
    "read_lines",
    "rotation_order",
    "run_journal",
]
