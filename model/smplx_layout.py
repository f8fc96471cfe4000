"""The SMPL-X file layout: joint names and kinematic tree, smplx's hard-coded vertex ids,
the 51 static face landmarks.

Facts about the real model that model/standin.py reproduces and that the landmark and
face-alignment code (model/evaluation/landmarks.py, model/face_geometry.py) relies on.
"""

from __future__ import annotations

NUM_VERTICES = 10475
NUM_JOINTS = 55
NUM_SHAPE = 300
NUM_EXPRESSION = 100
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9

JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "jaw",
    "left_eye_smplhf",
    "right_eye_smplhf",
    "left_index1",
    "left_index2",
    "left_index3",
    "left_middle1",
    "left_middle2",
    "left_middle3",
    "left_pinky1",
    "left_pinky2",
    "left_pinky3",
    "left_ring1",
    "left_ring2",
    "left_ring3",
    "left_thumb1",
    "left_thumb2",
    "left_thumb3",
    "right_index1",
    "right_index2",
    "right_index3",
    "right_middle1",
    "right_middle2",
    "right_middle3",
    "right_pinky1",
    "right_pinky2",
    "right_pinky3",
    "right_ring1",
    "right_ring2",
    "right_ring3",
    "right_thumb1",
    "right_thumb2",
    "right_thumb3",
)
JOINT = {name: index for index, name in enumerate(JOINT_NAMES)}

# The real SMPL-X kinematic tree (parent of each joint).
PARENTS = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    15,
    15,
    15,
    20,
    25,
    26,
    20,
    28,
    29,
    20,
    31,
    32,
    20,
    34,
    35,
    20,
    37,
    38,
    21,
    40,
    41,
    21,
    43,
    44,
    21,
    46,
    47,
    21,
    49,
    50,
    21,
    52,
    53,
)

# Vertex ids hard-coded by smplx (vertex_ids.py): nose, eyes, ears, finger tips, toes, heels.
SMPLX_VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846,
    "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
}  # fmt: skip

# Indices into the 51 static landmarks (iBUG-68 points 17..67).
LANDMARK_RIGHT_EYE = tuple(range(19, 25))  # iBUG 36-41, the person's right eye
LANDMARK_LEFT_EYE = tuple(range(25, 31))  # iBUG 42-47
LANDMARK_NOSE_TIP = 13  # iBUG 30
LANDMARK_MOUTH_RIGHT = 31  # iBUG 48
LANDMARK_MOUTH_LEFT = 37  # iBUG 54
