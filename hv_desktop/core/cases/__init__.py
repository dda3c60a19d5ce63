"""The review of cases: the session and its rules, the Qt-free workspace, run queue, differential views, practice and
consultation state."""
