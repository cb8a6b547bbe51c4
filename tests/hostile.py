"""Strings that try to break out of every context a template puts text in."""

MARKER_DIR = "/tmp"  # where an executed payload would leave its marker file

HOSTILE = (
    '"""; import os; os.system("touch /tmp/pw_pwned_docstring"); """',
    "'''; __import__('os').system('touch /tmp/pw_pwned_single') #",
    "\\\"\\'\\\\ back\\slashes \\N{BULLET} \\x00 \\u202e",
    "{{ ''.__class__.__mro__[1].__subclasses__() }} {% raw %} {# c #}",
    "$(touch /tmp/pw_pwned_shell) `touch /tmp/pw_pwned_tick` ; rm -rf / ; | && >",
    'line one\nline two\r\n# not a comment\n"""',
    "\u202eevil\u2066 bidi \u200b zero width \ufeff bom",
    "<script>alert(1)</script> | table | ```fence``` [link](javascript:x)",
    "\x00 nul \x07 bell \x1b[31m escape",
    "\uff49\uff4d\uff50\uff4f\uff52\uff54 \uff4f\uff53 confusables \u0430dmin",
    "\U0001d000 beyond the BMP \U0001f600 (JSON writes surrogate pairs; TOML refuses them)",
    "x" * 5000,
)
MARKERS = ("pw_pwned_docstring", "pw_pwned_single", "pw_pwned_shell", "pw_pwned_tick")
