"""SNU humanoid model (spec §8): MjModel construction, muscle table, frame conversion, data-file resolution.

The MASS data files come from ``WARPBENCH_SNU_DIR`` (CI sets it), else ``<repo>/../shared/assets/snu``;
the tests that need them are skipped when neither exists.
"""

from __future__ import annotations

import collections
import functools
import http.server
import itertools
import math
import os
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envs.models.snu import (
    KEPT_BODY_NAMES,
    SnuModel,
    load_snu,
    quat_from_matrix,
)
from envs.models.snu_data import (
    CACHE_DIR_ENV,
    DEFAULT_BASE_URL,
    SNU_DIR_ENV,
    SNU_FILE_SHA256,
    SnuDataError,
    file_sha256,
    snu_cache_dir,
    snu_data_files,
)
from envs.tasks import snu_humanoid as snu_task

_SNU_DIR = Path(os.environ.get(SNU_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared/assets/snu")
needs_data = pytest.mark.skipif(
    not all((_SNU_DIR / name).is_file() for name in SNU_FILE_SHA256), reason=f"SNU data not in {_SNU_DIR}"
)

EXPECTED_BODY_MASSES = {
    "Pelvis": 15.0,
    "FemurR": 7.0,
    "TibiaR": 3.0,
    "TalusR": 0.6,
    "FootThumbR": 0.2,
    "FootPinkyR": 0.2,
    "FemurL": 7.0,
    "TibiaL": 3.0,
    "TalusL": 0.6,
    "FootThumbL": 0.2,
    "FootPinkyL": 0.2,
}
EXPECTED_JOINT_TYPES = {"Pelvis": "free", "Femur": "ball", "Tibia": "hinge", "Talus": "ball", "Foot": "hinge"}

# Muscle names without the L_/R_ prefix, in file order (each appears as L_ then R_).
EXPECTED_MUSCLE_BASE_NAMES = (
    "Adductor_Brevis", "Adductor_Brevis1", "Adductor_Longus", "Adductor_Longus1", "Adductor_Magnus",
    "Adductor_Magnus1", "Adductor_Magnus2", "Adductor_Magnus3", "Adductor_Magnus4", "Bicep_Femoris_Longus",
    "Bicep_Femoris_Short", "Bicep_Femoris_Short1", "Extensor_Digitorum_Longus",
    "Extensor_Digitorum_Longus1", "Extensor_Digitorum_Longus2", "Extensor_Digitorum_Longus3",
    "Extensor_Hallucis_Longus", "Flexor_Digiti_Minimi_Brevis_Foot", "Flexor_Digitorum_Longus",
    "Flexor_Digitorum_Longus1", "Flexor_Digitorum_Longus2", "Flexor_Digitorum_Longus3", "Flexor_Hallucis",
    "Flexor_Hallucis1", "Gastrocnemius_Lateral_Head", "Gastrocnemius_Medial_Head", "Gluteus_Maximus",
    "Gluteus_Maximus1", "Gluteus_Maximus2", "Gluteus_Maximus3", "Gluteus_Maximus4", "Gluteus_Medius",
    "Gluteus_Medius1", "Gluteus_Medius2", "Gluteus_Medius3", "Gluteus_Minimus", "Gluteus_Minimus1",
    "Gluteus_Minimus2", "Gracilis", "Inferior_Gemellus", "Obturator_Externus", "Obturator_Internus",
    "Pectineus", "Peroneus_Brevis", "Peroneus_Longus", "Peroneus_Tertius", "Peroneus_Tertius1",
    "Piriformis", "Piriformis1", "Plantaris", "Popliteus", "Quadratus_Femoris", "Rectus_Femoris",
    "Rectus_Femoris1", "Sartorius", "Semimembranosus", "Semimembranosus1", "Semitendinosus", "Soleus",
    "Soleus1", "Superior_Gemellus", "Tensor_Fascia_Lata", "Tensor_Fascia_Lata1", "Tensor_Fascia_Lata2",
    "Tibialis_Anterior", "Tibialis_Posterior", "Vastus_Intermedius", "Vastus_Intermedius1",
    "Vastus_Lateralis", "Vastus_Lateralis1", "Vastus_Medialis", "Vastus_Medialis1", "Vastus_Medialis2",
    "iliacus", "iliacus1", "iliacus2",
)  # fmt: skip

BOX_CORNER_SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))


@pytest.fixture(scope="module")
def snu() -> SnuModel:
    """The model, built once for the module from the data directory."""
    if not all((_SNU_DIR / name).is_file() for name in SNU_FILE_SHA256):
        pytest.skip(f"SNU data not in {_SNU_DIR}")
    return load_snu(_SNU_DIR, passive=snu_task.joint_passive)


def _xml_kept_nodes() -> dict[str, ET.Element]:
    """Kept skeleton nodes straight from the XML (independent of the loader)."""
    root = ET.parse(_SNU_DIR / "human.xml").getroot()
    return {node.get("name"): node for node in root.findall("Node") if node.get("name") in KEPT_BODY_NAMES}


def _xml_kept_units() -> list[ET.Element]:
    """Muscle units whose waypoints all lie on kept bodies, straight from the XML."""
    root = ET.parse(_SNU_DIR / "muscle284.xml").getroot()
    return [
        unit
        for unit in root.findall("Unit")
        if all(w.get("body") in KEPT_BODY_NAMES for w in unit.findall("Waypoint"))
    ]


def _vector(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64)


def _box_corners(model: mujoco.MjModel, data: mujoco.MjData, geom_id: int) -> np.ndarray:
    """World positions [8, 3] of the corners of box geom ``geom_id``."""
    rotation = data.geom_xmat[geom_id].reshape(3, 3)
    return data.geom_xpos[geom_id] + (BOX_CORNER_SIGNS * model.geom_size[geom_id]) @ rotation.T


# ---------------------------------------------------------------------------------------------- model


def test_bodies_masses_and_dimensions(snu: SnuModel) -> None:
    model = snu.mjmodel
    assert model.nbody == 12 and model.njnt == 11
    assert model.nq == 29 and model.nv == 24
    assert snu.body_names == tuple(model.body(i).name for i in range(1, model.nbody))
    for name, mass in EXPECTED_BODY_MASSES.items():
        assert model.body(name).mass[0] == pytest.approx(mass, rel=1e-12)
    assert model.body_mass.sum() == pytest.approx(37.0, rel=1e-12)
    nodes = _xml_kept_nodes()
    for name in EXPECTED_BODY_MASSES:
        parent = nodes[name].get("parent")
        expected_parent = 0 if parent == "None" else model.body(parent).id
        assert model.body(name).parentid[0] == expected_parent
        size = _vector(nodes[name].find("Body").get("size"))
        np.testing.assert_allclose(model.geom(name).size, size / 2, rtol=0, atol=1e-15)
        assert model.geom(name).type[0] == mujoco.mjtGeom.mjGEOM_BOX
        assert model.geom(name).bodyid[0] == model.body(name).id
    np.testing.assert_allclose(model.opt.gravity, [0.0, -9.81, 0.0])


def test_joints_and_passive_parameters(snu: SnuModel) -> None:
    model = snu.mjmodel
    type_names = {
        int(mujoco.mjtJoint.mjJNT_FREE): "free",
        int(mujoco.mjtJoint.mjJNT_BALL): "ball",
        int(mujoco.mjtJoint.mjJNT_HINGE): "hinge",
    }
    dof_counts = {"free": 6, "ball": 3, "hinge": 1}
    expected_ke = np.zeros(model.nv)
    expected_kd = np.zeros(model.nv)
    for joint_id in range(model.njnt):
        joint = model.joint(joint_id)
        body_name = model.body(joint.bodyid[0]).name
        prefix = next(p for p in EXPECTED_JOINT_TYPES if body_name.startswith(p))
        type_name = type_names[int(joint.type[0])]
        assert type_name == EXPECTED_JOINT_TYPES[prefix]
        dofs = slice(joint.dofadr[0], joint.dofadr[0] + dof_counts[type_name])
        np.testing.assert_array_equal(model.jnt_pos[joint_id], 0.0)
        if joint.type[0] == mujoco.mjtJoint.mjJNT_FREE:
            assert joint.stiffness[0] == 0.0 and not joint.limited[0]
            np.testing.assert_array_equal(model.dof_damping[dofs], 0.0)
            np.testing.assert_array_equal(model.dof_armature[dofs], 0.0)
            continue
        scale = EXPECTED_BODY_MASSES[body_name] / 15.0
        assert joint.stiffness[0] == pytest.approx(5.0 * math.sqrt(scale), rel=1e-12)
        np.testing.assert_allclose(model.dof_damping[dofs], 2.0)
        np.testing.assert_allclose(model.dof_armature[dofs], 0.05)
        expected_ke[dofs] = 1e3 * scale
        expected_kd[dofs] = 10.0 * scale
        if joint.type[0] == mujoco.mjtJoint.mjJNT_HINGE:
            np.testing.assert_array_equal(model.jnt_axis[joint_id], [1.0, 0.0, 0.0])
            assert joint.limited[0]
            expected_range = [0.0, 2.3] if body_name.startswith("Tibia") else [-0.6, 0.6]
            np.testing.assert_allclose(joint.range, expected_range)
        else:
            assert not joint.limited[0]
    np.testing.assert_allclose(snu.limit_ke, expected_ke, rtol=1e-12)
    np.testing.assert_allclose(snu.limit_kd, expected_kd, rtol=1e-12)


def start_data(model: mujoco.MjModel) -> mujoco.MjData:
    """MuJoCo data at the SNU task's start pose (envs/tasks/snu_humanoid.py), other joints at rest."""
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    x, y, z, w = snu_task.START_ROTATION
    data.qpos[:7] = [*snu_task.START_POSITION, w, x, y, z]
    return data


def test_start_state_and_ground(snu: SnuModel) -> None:
    model = snu.mjmodel
    data = start_data(model)
    mujoco.mj_kinematics(model, data)
    half = math.sqrt(0.5)
    np.testing.assert_allclose(data.qpos[:7], [0.0, 1.0, 0.0, half, 0.0, half, 0.0], atol=1e-15)
    np.testing.assert_allclose(data.xpos[model.body("Pelvis").id], [0.0, 1.0, 0.0], atol=1e-15)
    # The pelvis x axis now points along -z, its z axis along +x (facing +x).
    np.testing.assert_allclose(
        data.xmat[model.body("Pelvis").id].reshape(3, 3)[:, 2], [1.0, 0.0, 0.0], atol=1e-15
    )
    # Ground plane: normal +y through the origin; feet a few cm above it.
    ground = model.geom("ground").id
    assert model.geom_type[ground] == mujoco.mjtGeom.mjGEOM_PLANE
    np.testing.assert_allclose(data.geom_xmat[ground].reshape(3, 3)[:, 2], [0.0, 1.0, 0.0], atol=1e-15)
    lowest = min(_box_corners(model, data, g)[:, 1].min() for g in range(model.ngeom) if g != ground)
    assert 0.01 < lowest < 0.05
    # Collision filter: boxes collide with the ground only.
    boxes = [g for g in range(model.ngeom) if g != ground]
    for first, second in itertools.combinations(boxes, 2):
        assert not (model.geom_contype[first] & model.geom_conaffinity[second])
        assert not (model.geom_contype[second] & model.geom_conaffinity[first])
    for box in boxes:
        assert model.geom_contype[box] & model.geom_conaffinity[ground]
    data.qpos[1] = 3.0
    mujoco.mj_forward(model, data)
    assert data.ncon == 0


def test_rest_pose_reproduces_xml_frames_and_waypoints(snu: SnuModel) -> None:
    """With the root at its XML rest joint frame, MuJoCo's kinematics reproduce every XML world position."""
    model = snu.mjmodel
    data = mujoco.MjData(model)
    nodes = _xml_kept_nodes()
    pelvis_joint = nodes["Pelvis"].find("Joint").find("Transformation")
    qpos = model.qpos0.copy()
    qpos[:3] = _vector(pelvis_joint.get("translation"))
    qpos[3:7] = quat_from_matrix(_vector(pelvis_joint.get("linear")).reshape(3, 3))
    np.testing.assert_allclose(snu.rest_qpos, qpos, atol=1e-15)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)

    for name, node in nodes.items():
        joint_tf = node.find("Joint").find("Transformation")
        body_tf = node.find("Body").find("Transformation")
        body_id = model.body(name).id
        np.testing.assert_allclose(data.xpos[body_id], _vector(joint_tf.get("translation")), atol=1e-12)
        # All joint frames of the file are axis-aligned.
        np.testing.assert_allclose(data.xmat[body_id].reshape(3, 3), np.eye(3), atol=1e-12)
        np.testing.assert_allclose(
            data.geom_xpos[model.geom(name).id], _vector(body_tf.get("translation")), atol=1e-12
        )
        box_rotation = _vector(body_tf.get("linear")).reshape(3, 3)
        tolerance = 0.11 if name.startswith("Femur") else 2e-4  # femur matrices are not orthonormal
        np.testing.assert_allclose(
            data.geom_xmat[model.geom(name).id].reshape(3, 3), box_rotation, atol=tolerance
        )

    muscles = snu.muscles
    units = _xml_kept_units()
    assert [unit.get("name") for unit in units] == muscles.names
    for index, unit in enumerate(units):
        waypoints = unit.findall("Waypoint")
        start, stop = muscles.waypoint_start[index], muscles.waypoint_start[index + 1]
        assert stop - start == len(waypoints)
        for k, waypoint in zip(range(start, stop), waypoints, strict=True):
            body_id = muscles.waypoint_body[k]
            assert model.body(body_id).name == waypoint.get("body")
            world = data.xpos[body_id] + data.xmat[body_id].reshape(3, 3) @ muscles.waypoint_point[k]
            np.testing.assert_allclose(world, _vector(waypoint.get("p")), atol=1e-12)
            np.testing.assert_array_equal(muscles.waypoint_rest_world[k], _vector(waypoint.get("p")))

    # Segments: their two ends, mapped to world, are consecutive XML waypoints of their muscle.
    for segment in range(muscles.num_segments):
        ends = []
        for body_ids, points in (
            (muscles.segment_body_a, muscles.segment_point_a),
            (muscles.segment_body_b, muscles.segment_point_b),
        ):
            body_id = body_ids[segment]
            ends.append(data.xpos[body_id] + data.xmat[body_id].reshape(3, 3) @ points[segment])
        waypoints = units[muscles.segment_muscle[segment]].findall("Waypoint")
        world = np.array([_vector(w.get("p")) for w in waypoints])
        pair_index = [
            i
            for i in range(len(waypoints) - 1)
            if np.allclose(world[i], ends[0], atol=1e-12) and np.allclose(world[i + 1], ends[1], atol=1e-12)
        ]
        assert len(pair_index) >= 1
        i = pair_index[0]
        assert waypoints[i].get("body") != waypoints[i + 1].get("body")
        assert model.body(muscles.segment_body_a[segment]).name == waypoints[i].get("body")
        assert model.body(muscles.segment_body_b[segment]).name == waypoints[i + 1].get("body")


def test_muscle_table_counts(snu: SnuModel) -> None:
    muscles = snu.muscles
    assert muscles.num_muscles == 152
    assert muscles.f0.shape == (152,)
    assert muscles.f0.min() == pytest.approx(45.0) and muscles.f0.max() == pytest.approx(1792.95)
    counts = collections.Counter(np.diff(muscles.waypoint_start).tolist())
    assert counts == {2: 6, 3: 38, 4: 64, 5: 18, 6: 18, 7: 8}
    assert muscles.num_segments == 198
    for array in (muscles.segment_muscle, muscles.segment_body_a, muscles.segment_body_b):
        assert array.shape == (198,) and array.dtype == np.int32
    assert muscles.segment_point_a.shape == (198, 3) and muscles.segment_point_b.shape == (198, 3)
    assert np.all(muscles.segment_body_a != muscles.segment_body_b)
    assert np.all(np.diff(muscles.segment_muscle) >= 0)
    assert np.all((muscles.segment_body_a >= 1) & (muscles.segment_body_a < snu.mjmodel.nbody))
    # Every muscle spans at least one joint.
    assert set(muscles.segment_muscle.tolist()) == set(range(152))


def test_muscle_names_are_mirror_pairs(snu: SnuModel) -> None:
    names = snu.muscles.names
    assert sum(name.startswith("L_") for name in names) == 76
    assert sum(name.startswith("R_") for name in names) == 76
    assert names[0::2] == [f"L_{base}" for base in EXPECTED_MUSCLE_BASE_NAMES]
    assert names[1::2] == [f"R_{base}" for base in EXPECTED_MUSCLE_BASE_NAMES]
    muscles = snu.muscles
    model = snu.mjmodel

    def mirrored_body(body_id: int) -> int:
        name = model.body(body_id).name
        if name == "Pelvis":
            return body_id
        return model.body(name[:-1] + {"L": "R", "R": "L"}[name[-1]]).id

    for left in range(0, 152, 2):
        right = left + 1
        assert muscles.f0[left] == muscles.f0[right]
        left_points = slice(muscles.waypoint_start[left], muscles.waypoint_start[left + 1])
        right_points = slice(muscles.waypoint_start[right], muscles.waypoint_start[right + 1])
        assert [mirrored_body(b) for b in muscles.waypoint_body[left_points]] == list(
            muscles.waypoint_body[right_points]
        )
        np.testing.assert_array_equal(
            muscles.waypoint_rest_world[left_points] * [-1.0, 1.0, 1.0],
            muscles.waypoint_rest_world[right_points],
        )


def test_mujoco_step_does_not_explode(snu: SnuModel) -> None:
    """MuJoCo's own dynamics (its contact, its springs) as a sanity check of the compiled model."""
    model = snu.mjmodel
    model.opt.timestep = 1.0 / (60.0 * snu_task.SUBSTEPS)
    model.geom_friction[:, 0] = snu_task.CONTACT["contact_mu"]
    data = start_data(model)
    for _ in range(2000):  # 0.69 s at the spec substep: falls, lands, collapses
        mujoco.mj_step(model, data)
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    assert np.abs(data.qvel).max() < 50.0
    assert 0.05 < data.qpos[1] < 1.0
    lowest = min(_box_corners(model, data, g)[:, 1].min() for g in range(1, model.ngeom))
    assert lowest > -0.02


# ------------------------------------------------------------------------------------ data resolution


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No WARPBENCH_SNU_DIR, and the user cache in a fresh temporary folder (returned)."""
    monkeypatch.delenv(SNU_DIR_ENV, raising=False)
    cache_root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache_root))
    return cache_root / "snu"


def _copy_data(destination: Path, corrupt: str | None = None) -> Path:
    """Copy both data files to ``destination``; append a byte to file ``corrupt`` if given."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in SNU_FILE_SHA256:
        shutil.copyfile(_SNU_DIR / name, destination / name)
    if corrupt is not None:
        with open(destination / corrupt, "ab") as stream:
            stream.write(b" ")
    return destination


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a temporary folder: (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@needs_data
def test_env_var_directory_is_used(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    monkeypatch.setenv(SNU_DIR_ENV, str(_SNU_DIR))
    files = snu_data_files(base_url="http://127.0.0.1:9/never-used")
    assert files == {name: _SNU_DIR / name for name in SNU_FILE_SHA256}
    assert not isolated_env.exists()


@needs_data
def test_env_var_directory_corrupt_file_is_rejected(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path, tmp_path: Path
) -> None:
    data_dir = _copy_data(tmp_path / "snu_env", corrupt="muscle284.xml")
    monkeypatch.setenv(SNU_DIR_ENV, str(data_dir))
    with pytest.raises(SnuDataError) as error:
        snu_data_files()
    message = str(error.value)
    assert str(data_dir / "muscle284.xml") in message
    assert SNU_FILE_SHA256["muscle284.xml"] in message
    assert f"{DEFAULT_BASE_URL}/muscle284.xml" in message
    assert SNU_DIR_ENV in message and CACHE_DIR_ENV in message
    with pytest.raises(SnuDataError):
        load_snu(data_dir)


@needs_data
def test_env_var_directory_missing_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path, tmp_path: Path
) -> None:
    data_dir = _copy_data(tmp_path / "snu_env")
    (data_dir / "human.xml").unlink()
    monkeypatch.setenv(SNU_DIR_ENV, str(data_dir))
    with pytest.raises(SnuDataError, match="human.xml not found") as error:
        snu_data_files()
    assert f"{DEFAULT_BASE_URL}/human.xml" in str(error.value)


@needs_data
def test_cache_hit_and_corrupt_cache(isolated_env: Path) -> None:
    assert snu_cache_dir() == isolated_env
    with pytest.raises(SnuDataError, match="download=False") as error:
        snu_data_files(download=False)
    assert str(isolated_env) in str(error.value) and SNU_DIR_ENV in str(error.value)
    _copy_data(isolated_env)
    assert snu_data_files(download=False) == {name: isolated_env / name for name in SNU_FILE_SHA256}
    with open(isolated_env / "human.xml", "ab") as stream:
        stream.write(b"\n")
    with pytest.raises(SnuDataError, match="corrupt") as error:
        snu_data_files(base_url="http://127.0.0.1:9/never-used")
    assert str(isolated_env / "human.xml") in str(error.value)


@needs_data
def test_download_from_file_url(isolated_env: Path, tmp_path: Path) -> None:
    mirror = _copy_data(tmp_path / "mirror")
    files = snu_data_files(base_url=mirror.as_uri())
    assert files == {name: isolated_env / name for name in SNU_FILE_SHA256}
    for name, path in files.items():
        assert file_sha256(path) == SNU_FILE_SHA256[name]
    assert load_snu().muscles.num_muscles == 152  # found in the cache now, no download


@needs_data
def test_download_from_local_http_server(isolated_env: Path, http_server: tuple[str, Path]) -> None:
    base_url, served = http_server
    _copy_data(served / "data")
    files = snu_data_files(base_url=base_url)
    for name, path in files.items():
        assert path == isolated_env / name
        assert file_sha256(path) == SNU_FILE_SHA256[name]


@needs_data
def test_download_with_wrong_hash_is_rejected(isolated_env: Path, http_server: tuple[str, Path]) -> None:
    base_url, served = http_server
    _copy_data(served / "data", corrupt="human.xml")
    with pytest.raises(SnuDataError) as error:
        snu_data_files(base_url=base_url)
    message = str(error.value)
    assert f"{base_url}/human.xml" in message
    assert SNU_FILE_SHA256["human.xml"] in message
    assert f"{DEFAULT_BASE_URL}/human.xml" in message and SNU_DIR_ENV in message
    assert not (isolated_env / "human.xml").exists()


def test_download_failure_says_how_to_obtain(isolated_env: Path, http_server: tuple[str, Path]) -> None:
    base_url, _ = http_server  # serves an empty folder: 404
    with pytest.raises(SnuDataError, match="Could not download") as error:
        snu_data_files(base_url=base_url)
    message = str(error.value)
    assert f"{DEFAULT_BASE_URL}/human.xml" in message
    assert str(isolated_env) in message and SNU_DIR_ENV in message and CACHE_DIR_ENV in message
