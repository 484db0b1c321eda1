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


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL`` to a headless backend when unset and MuJoCo is not imported yet; return its value."""
    if not os.environ.get("MUJOCO_GL") and "mujoco" not in sys.modules:
        backend = available_backend()
        if backend is not None:
            os.environ["MUJOCO_GL"] = backend
    return os.environ.get("MUJOCO_GL", "")


def gl_error_message(error: BaseException) -> str:
    """One line saying why MuJoCo could not open a GL context, naming the missing system library."""
    backend = os.environ.get("MUJOCO_GL", "").lower()
    if backend in GL_LIBRARIES:
        library, package = GL_LIBRARIES[backend]
        if not ctypes.util.find_library(library):
            return (
                f"cannot render: MUJOCO_GL={backend} needs the system library lib{library}, which is not "
                f"installed (Debian/Ubuntu: apt-get install {package})"
            )
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
