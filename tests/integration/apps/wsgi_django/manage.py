#!/usr/bin/env python
"""Django's command-line utility (from `django-admin startproject`): the tests run `migrate` and
`createsuperuser` with it. WSGI_DJANGO_DATA_DIR names the directory of the sqlite database."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
