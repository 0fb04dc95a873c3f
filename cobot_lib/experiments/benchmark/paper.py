"""The paper's numbers the benchmark is read against (METHOD.md sections 4-5), kept as data.

Tables 1-3 (Sec. 5.2, Adaptformer on ViT-B) report ADOME, NWPU and TRCAN; Table 4 ten sets. Each
domain of the benchmark stands beside one paper set per kind of table (``PAPER_SETS``); the real
demo sets (nuclei, mri) have no paper set beside them.
"""

from __future__ import annotations

__all__ = [
    "FIG5_CLAIM",
    "PAPER_SETS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "TABLE1_ROWS",
    "TABLE2_ROWS",
    "TABLE3_ROWS",
    "TABLE4_SETS",
]

#: Table 1's rows in order (the check marks, read from the paper's prose), then Tables 2 and 3's.
TABLE1_ROWS = ("Adaptformer", "+CoS", "+HL", "+CoS+HL", "+CoS+RM", "+CoS+RM+HL")
TABLE2_ROWS = ("Fixed", "Learnable")
TABLE3_ROWS = ("Linear", "HL")
#: Table 1 of the paper (%): one value per row of TABLE1_ROWS.
PAPER_TABLE1 = {
    "ADOME": (90.1, 90.1, 90.3, 90.4, 90.9, 91.3),
    "NWPU": (83.0, 83.1, 83.3, 83.3, 83.7, 84.0),
    "TRCAN": (73.3, 73.4, 73.5, 73.5, 73.9, 74.1),
}
#: Tables 2 and 3 of the paper (%): (mean, std) per row.
PAPER_TABLE2 = {
    "ADOME": ((90.2, 0.6), (91.3, 0.5)),
    "NWPU": ((83.4, 0.6), (84.0, 0.3)),
    "TRCAN": ((73.3, 0.2), (74.1, 0.0)),
}
PAPER_TABLE3 = {
    "ADOME": ((90.9, 0.6), (91.3, 0.5)),
    "NWPU": ((83.8, 0.2), (84.0, 0.3)),
    "TRCAN": ((73.9, 0.1), (74.1, 0.0)),
}
#: Fig. 5 has no printed numbers; its text (Sec. 5.3, "Different Hidden Dimensions", not the
#: ablations of Sec. 5.2) claims: COBOT beats Adaptformer at every V, and the gain is larger at
#: V <= 16 (over 1.6 points DSC on ADOME).
FIG5_CLAIM = "COBOT > Adaptformer at every V; larger gains at V <= 16"

#: Table 4's columns (METHOD.md section 5).
TABLE4_SETS = ("COCO", "TRCAN", "NWPU", "SSDD", "SONAR", "ADOME", "SPLEN", "MOMO", "BRAST",
               "SEGRAP")  # fmt: skip
#: Table 4 of the paper (%, ViT-B), one value per set of TABLE4_SETS, by the grid's row names
#: (checked against the paper's text). The paper's "Avg" column is not the mean of these for
#: three rows: LoRA 81.1 (mean 81.24), LoRA+COBOT 81.8 (81.92), Adaptformer+COBOT 83.6 (83.49).
PAPER_TABLE4 = {
    "Freeze": (53.0, 53.9, 59.6, 63.2, 34.5, 23.5, 24.3, 24.3, 60.1, 10.5),
    "Lightweight": (70.4, 70.3, 80.5, 80.2, 79.8, 86.0, 93.4, 86.3, 85.1, 67.8),
    "LoRA": (71.8, 72.8, 81.8, 80.7, 82.8, 88.0, 94.4, 86.6, 84.8, 68.7),
    "LoRA+COBOT": (72.1, 73.1, 82.5, 81.2, 84.6, 88.7, 94.9, 86.7, 85.3, 70.1),
    "Adaptformer": (71.7, 73.3, 83.0, 81.9, 84.1, 90.1, 94.8, 87.6, 85.8, 72.1),
    "Adaptformer+COBOT": (72.2, 74.1, 84.0, 82.4, 84.9, 91.3, 96.4, 89.2, 87.3, 73.1),
}
#: The paper set beside each domain: (in Tables 1-3, in Table 4).
PAPER_SETS = {"sonar": ("TRCAN", "SONAR"), "ct": ("ADOME", "ADOME"), "aerial": ("NWPU", "NWPU")}
