"""Headless OpenGL for ``mujoco.Renderer``: choose the backend before MuJoCo is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and uses GLFW (which needs a display) when
it is unset. :func:`select_gl_backend` must therefore run before anything imports ``mujoco`` (``envs`` does):
it picks EGL, else OSMesa, whichever system library is installed. This module imports nothing heavy.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

GL_LIBRARIES = {"egl": ("EGL", "libegl1"), "osmesa": ("OSMesa", "libosmesa6")}
"""Headless backend -> (its system library, the Debian/Ubuntu package that ships it)."""


def available_backend() -> str | None:
    """EGL if libEGL is installed, else OSMesa if libOSMesa is, else None."""
    for backend, (library, _) in GL_LIBRARIES.items():
        if ctypes.util.find_library(library):
            return backend
    return None


class GLError(RuntimeError):
    """The OpenGL backend named by ``MUJOCO_GL`` cannot work here; the message is one line."""


def missing_library_message(backend: str) -> str | None:
    """Why ``backend`` cannot work (its system library is not installed), or None."""
    if backend not in GL_LIBRARIES:
        return None
    library, package = GL_LIBRARIES[backend]
    if ctypes.util.find_library(library):
        return None
    return (
        f"cannot render: MUJOCO_GL={backend} needs the system library lib{library}, which is not installed "
        f"(Debian/Ubuntu: apt-get install {package})"
    )


def select_gl_backend() -> str:
    """Before MuJoCo's import: set an unset ``MUJOCO_GL`` to EGL or OSMesa, whichever is installed.

    Raises GLError when ``MUJOCO_GL`` names a headless backend whose library is missing (MuJoCo's import would
    fail with an unrelated PyOpenGL error). Returns the backend (empty when none was found or set).
    """
    backend = os.environ.get("MUJOCO_GL", "").lower()
    if "mujoco" in sys.modules:
        return backend
    if not backend:
        backend = available_backend() or ""
        if backend:
            os.environ["MUJOCO_GL"] = backend
    problem = missing_library_message(backend)
    if problem is not None:
        raise GLError(problem)
    return backend


def gl_error_message(error: BaseException) -> str:
    """One line saying why MuJoCo could not open a GL context, naming the missing system library."""
    backend = os.environ.get("MUJOCO_GL", "").lower()
    problem = missing_library_message(backend)
    if problem is not None:
        return problem
    if backend in GL_LIBRARIES:
        return f"cannot render: MuJoCo could not open an {backend} OpenGL context ({type(error).__name__})"
    if available_backend() is None:
        return (
            "cannot render: no headless OpenGL library, neither libEGL (apt-get install libegl1) "
            "nor libOSMesa (apt-get install libosmesa6) is installed"
        )
    return (
        f"cannot render: MuJoCo was imported with MUJOCO_GL={backend or 'unset (GLFW, needs a display)'}; "
        "set MUJOCO_GL=egl (or osmesa) before Python starts"
    )
