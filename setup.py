"""Only the package list, which pyproject.toml cannot express: `migrations/` stays at
the top of the repository (alembic.ini, `alembic revision`), but the wheel installs it
as the subpackage `app.migrations`, so site-packages gets no top-level `migrations`
package to collide with the user's own. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["app", "app.*"]),
        "app.migrations",
        "app.migrations.versions",
    ],
    package_dir={"app.migrations": "migrations"},
)
