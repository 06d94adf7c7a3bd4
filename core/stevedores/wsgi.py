"""WSGI entry point: ``stevedores.wsgi:application``."""

from stevedores.app import create_app

application = create_app()
