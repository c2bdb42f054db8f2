"""DeepFashion annotation readers: exact rows from hand-written official-format fixtures, and errors
that name the file and line for malformed input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionnet.data import schema
from fashionnet.data.readers import (
    AnnotationError,
    AnnotationWarning,
    category_names,
    detect_benchmark,
    item_label_maps,
    read_attribute_names,
    read_attribute_table,
    read_benchmark,
    read_consumer2shop,
    read_descriptions,
    read_fld,
    read_inshop,
)
from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, OCCLUDED, TRUNCATED, VISIBLE

FIXTURES = Path(__file__).resolve().parent / "fixtures"
INSHOP, C2S, FLD = FIXTURES / "inshop", FIXTURES / "consumer2shop", FIXTURES / "fld"
NAN = np.nan


def row_of(frame: pd.DataFrame, image: str) -> pd.Series:
    rows = frame[frame["image_path"] == image]
    assert len(rows) == 1, f"{image}: {len(rows)} rows"
    return rows.iloc[0]


def landmarks(row: pd.Series) -> tuple[list[float], list[float], list[int]]:
    xs = [row[f"{n}_x"] for n in LANDMARK_NAMES]
    ys = [row[f"{n}_y"] for n in LANDMARK_NAMES]
    vis = [int(row[f"{n}_vis"]) for n in LANDMARK_NAMES]
    return xs, ys, vis


def assert_landmarks(row: pd.Series, xs, ys, vis) -> None:
    got_x, got_y, got_vis = landmarks(row)
    np.testing.assert_array_equal(got_x, np.array(xs, dtype=float))
    np.testing.assert_array_equal(got_y, np.array(ys, dtype=float))
    assert got_vis == vis


def image_size(root: Path, image: str) -> tuple[int, int]:
    with Image.open(root / image) as img:
        return img.size


# ------------------------------------------------------------------------------------------
# In-shop
# ------------------------------------------------------------------------------------------


def test_inshop_reads_every_partition_image_with_schema_and_fields():
    frame = read_inshop(INSHOP)
    assert list(frame.columns) == list(schema.COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype) for c, t in schema.COLUMNS.items()}
    # (image, item, split, clothes_type, variation_type, category, attributes) as in the fixture files;
    # 02_2_side has no landmark row, so its variation_type is the bbox file's pose_type (2).
    expected = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train", 3, 1, "Dresses", [1, -1, 0]),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train", 3, 2, "Dresses", [1, -1, 0]),
        ("img/MEN/Tees_Tanks/id_00000007/01_1_front.jpg", "id_00000007", "query", 1, 2, "Tees_Tanks", [-1, 1, 1]),
        ("img/MEN/Tees_Tanks/id_00000007/01_3_back.jpg", "id_00000007", "gallery", 1, 1, "Tees_Tanks", [-1, 1, 1]),
        ("img/WOMEN/Shorts/id_00000010/01_1_front.jpg", "id_00000010", "query", 2, 4, "Shorts", None),
        ("img/WOMEN/Shorts/id_00000010/03_4_full.jpg", "id_00000010", "gallery", 2, 5, "Shorts", None),
    ]
    assert frame["image_path"].tolist() == [e[0] for e in expected]
    for image, item, split, clothes_type, variation, category, attributes in expected:
        row = row_of(frame, image)
        assert (row["item_id"], row["split"], row["source"]) == (item, split, "shop")
        assert (row["clothes_type"], row["variation_type"], row["category"]) == (clothes_type, variation, category)
        if attributes is None:
            assert row["attributes"] is None
        else:
            assert row["attributes"].dtype == np.int8
            assert row["attributes"].tolist() == attributes


def test_inshop_full_body_row_fills_all_eight_slots_in_file_order():
    row = row_of(read_inshop(INSHOP), "img/WOMEN/Dresses/id_00000002/02_1_front.jpg")
    # 0 10 8  0 21 8  1 5 14  0 27 14  0 11 24  0 20 24  2 8 47  0 24 46
    assert_landmarks(
        row,
        [10, 21, 5, 27, 11, 20, 8, 24],
        [8, 8, 14, 14, 24, 24, 47, 46],
        [VISIBLE, VISIBLE, OCCLUDED, VISIBLE, VISIBLE, VISIBLE, TRUNCATED, VISIBLE],
    )


def test_six_landmark_row_goes_to_collar_sleeve_and_hem_slots():
    row = row_of(read_inshop(INSHOP), "img/MEN/Tees_Tanks/id_00000007/01_1_front.jpg")
    # 0 14 5  0 26 5  0 4 15  1 36 15  0 9 35  0 31 35 -> slots 0 1 2 3 6 7; waistline slots absent
    assert_landmarks(
        row,
        [14, 26, 4, 36, NAN, NAN, 9, 31],
        [5, 5, 15, 15, NAN, NAN, 35, 35],
        [VISIBLE, VISIBLE, VISIBLE, OCCLUDED, ABSENT, ABSENT, VISIBLE, VISIBLE],
    )


def test_four_landmark_row_goes_to_waistline_and_hem_slots():
    row = row_of(read_inshop(INSHOP), "img/WOMEN/Shorts/id_00000010/01_1_front.jpg")
    # 0 4 5  0 19 5  0 3 27  1 20 27 -> slots 4 5 6 7; collar and sleeve slots absent
    assert_landmarks(
        row,
        [NAN, NAN, NAN, NAN, 4, 19, 3, 20],
        [NAN, NAN, NAN, NAN, 5, 5, 27, 27],
        [ABSENT, ABSENT, ABSENT, ABSENT, VISIBLE, VISIBLE, VISIBLE, OCCLUDED],
    )


def test_invisible_landmarks_are_kept_without_shifting_later_slots():
    row = row_of(read_inshop(INSHOP), "img/MEN/Tees_Tanks/id_00000007/01_3_back.jpg")
    # back view: both collar points occluded, left hem truncated - all kept with their coordinates
    assert_landmarks(
        row,
        [13, 27, 3, 37, NAN, NAN, 8, 32],
        [6, 6, 16, 16, NAN, NAN, 39, 38],
        [OCCLUDED, OCCLUDED, VISIBLE, VISIBLE, ABSENT, ABSENT, TRUNCATED, VISIBLE],
    )
    both_truncated = row_of(read_inshop(INSHOP), "img/WOMEN/Shorts/id_00000010/03_4_full.jpg")
    assert landmarks(both_truncated)[2][6:] == [TRUNCATED, TRUNCATED]
    assert landmarks(both_truncated)[0][6:] == [5.0, 19.0]


def test_image_without_landmark_row_has_every_slot_absent():
    row = row_of(read_inshop(INSHOP), "img/WOMEN/Dresses/id_00000002/02_2_side.jpg")
    assert_landmarks(row, [NAN] * 8, [NAN] * 8, [ABSENT] * 8)
    assert row["clothes_type"] == 3  # from the bbox file


def test_bbox_outside_the_image_is_clipped_to_it():
    frame = read_inshop(INSHOP)
    tee = "img/MEN/Tees_Tanks/id_00000007/01_1_front.jpg"  # file: x_2 = 41, one pixel past the image
    width, height = image_size(INSHOP, tee)
    assert 41 > width
    assert row_of(frame, tee)[schema.BBOX_COLUMNS].tolist() == [2.0, 3.0, float(width), 38.0]
    shorts = row_of(frame, "img/WOMEN/Shorts/id_00000010/01_1_front.jpg")  # file: x_1 = -1
    assert shorts[schema.BBOX_COLUMNS].tolist() == [0.0, 4.0, 23.0, 30.0]
    inside = row_of(frame, "img/WOMEN/Dresses/id_00000002/02_1_front.jpg")
    assert inside[schema.BBOX_COLUMNS].tolist() == [4.0, 2.0, 29.0, 47.0]

    dress = "img/DRESSES/Dresses/id_00000009/comsumer_02.jpg"  # file: y_2 = 50, two pixels past
    _, dress_height = image_size(C2S, dress)
    assert row_of(read_consumer2shop(C2S), dress)["bbox_y2"] == float(dress_height) < 50


def test_without_image_checks_only_negative_coordinates_are_clipped():
    frame = read_inshop(INSHOP, verify_images=False)
    assert row_of(frame, "img/MEN/Tees_Tanks/id_00000007/01_1_front.jpg")["bbox_x2"] == 41.0
    assert row_of(frame, "img/WOMEN/Shorts/id_00000010/01_1_front.jpg")["bbox_x1"] == 0.0


def test_attribute_names_may_contain_spaces():
    assert read_attribute_names(INSHOP) == ["floral", "long sleeve", "denim"]
    table = read_attribute_table(C2S)  # Chinese + English names, numeric types resolved via list_attr_type.txt
    assert table["name"].tolist() == ["条纹 stripe", "长袖 long sleeve", "短袖 short sleeve"]
    assert table["type_name"].tolist() == ["纹理 texture", "袖长 sleeve", "袖长 sleeve"]


def test_name_only_attribute_file_keeps_the_whole_line_as_name(tmp_path):
    root = copy_root(INSHOP, tmp_path)
    (root / "Anno/list_attr_cloth.txt").write_text("3\nattribute_name\nfloral\nlong sleeve\ndenim 2\n")
    assert read_attribute_names(root) == ["floral", "long sleeve", "denim 2"]


def test_descriptions_are_read_per_item():
    descriptions = read_descriptions(INSHOP)
    assert descriptions["item_id"].tolist() == ["id_00000002", "id_00000007"]
    assert descriptions["color"].tolist() == ["Navy-white", "Heather grey"]
    assert descriptions["description"].iloc[0] == ["A woven dress", "with a floral print"]


def test_category_files_fill_images_whose_path_has_no_category(tmp_path):
    root = tmp_path / "loose"
    write(root / "Eval/list_eval_partition.txt", "2\nimage_name item_id evaluation_status\nimg/a.jpg id_1 train\nimg/b.jpg id_1 train\n")
    write(root / "Anno/list_bbox_inshop.txt", "2\nimage_name clothes_type pose_type x_1 y_1 x_2 y_2\nimg/a.jpg 1 1 0 0 5 5\nimg/b.jpg 2 1 0 0 5 5\n")
    write(root / "Anno/list_category_cloth.txt", "2\ncategory_name category_type\nAnorak 1\nCapri Pants 2\n")
    write(root / "Anno/list_category_img.txt", "2\nimage_name category_label\nimg/a.jpg 1\nimg/b.jpg 2\n")
    frame = read_inshop(root, verify_images=False)
    assert frame["category"].tolist() == ["Anorak", "Capri Pants"]


# ------------------------------------------------------------------------------------------
# Consumer-to-shop and FLD
# ------------------------------------------------------------------------------------------


def test_consumer2shop_pairs_become_one_row_per_image():
    frame = read_consumer2shop(C2S)
    # first appearance in the partition, name_1 (consumer) before name_2 (shop) of each pair
    expected = [
        ("img/TOPS/Tees/id_00000001/comsumer_01.jpg", "consumer", "id_00000001", "train", "Tees", 1),
        ("img/TOPS/Tees/id_00000001/shop_01.jpg", "shop", "id_00000001", "train", "Tees", 1),
        ("img/TOPS/Tees/id_00000001/shop_02.jpg", "shop", "id_00000001", "train", "Tees", 1),
        ("img/BOTTOMS/Trousers/id_00000005/comsumer_01.jpg", "consumer", "id_00000005", "val", "Trousers", 2),
        ("img/BOTTOMS/Trousers/id_00000005/shop_01.jpg", "shop", "id_00000005", "val", "Trousers", 2),
        ("img/DRESSES/Dresses/id_00000009/comsumer_01.jpg", "consumer", "id_00000009", "test", "Dresses", 3),
        ("img/DRESSES/Dresses/id_00000009/shop_01.jpg", "shop", "id_00000009", "test", "Dresses", 3),
        ("img/DRESSES/Dresses/id_00000009/comsumer_02.jpg", "consumer", "id_00000009", "test", "Dresses", 3),
    ]
    got = list(zip(frame["image_path"], frame["source"], frame["item_id"], frame["split"], frame["category"], frame["clothes_type"]))
    assert got == expected
    assert row_of(frame, "img/TOPS/Tees/id_00000001/shop_01.jpg")["attributes"].tolist() == [1, -1, 1]
    assert row_of(frame, "img/DRESSES/Dresses/id_00000009/comsumer_01.jpg")["variation_type"] == 4
    assert pd.isna(row_of(frame, "img/TOPS/Tees/id_00000001/shop_02.jpg")["variation_type"])  # no landmark row


def test_consumer2shop_landmark_slots():
    frame = read_consumer2shop(C2S)
    # upper: 0 11 6  0 19 6  1 2 14  0 28 14  0 6 34  2 24 40
    assert_landmarks(
        row_of(frame, "img/TOPS/Tees/id_00000001/comsumer_01.jpg"),
        [11, 19, 2, 28, NAN, NAN, 6, 24],
        [6, 6, 14, 14, NAN, NAN, 34, 40],
        [VISIBLE, VISIBLE, OCCLUDED, VISIBLE, ABSENT, ABSENT, VISIBLE, TRUNCATED],
    )
    # lower: 0 5 4  0 15 4  0 3 37  1 16 37
    assert_landmarks(
        row_of(frame, "img/BOTTOMS/Trousers/id_00000005/comsumer_01.jpg"),
        [NAN, NAN, NAN, NAN, 5, 15, 3, 16],
        [NAN, NAN, NAN, NAN, 4, 4, 37, 37],
        [ABSENT] * 4 + [VISIBLE, VISIBLE, VISIBLE, OCCLUDED],
    )


def test_fld_has_no_items_or_sources():
    frame = read_fld(FLD)
    assert list(frame.columns) == list(schema.COLUMNS)
    assert frame["split"].tolist() == ["train", "val", "test"]
    assert frame["item_id"].isna().all() and frame["source"].isna().all() and frame["category"].isna().all()
    assert frame["clothes_type"].tolist() == [1, 2, 3]
    assert frame[schema.BBOX_COLUMNS].iloc[1].tolist() == [3.0, 2.0, 21.0, 31.0]
    # full body: 0 9 3  1 15 3  0 2 10  0 22 10  0 8 20  0 16 20  0 5 38  2 20 39
    assert_landmarks(
        frame.iloc[2],
        [9, 15, 2, 22, 8, 16, 5, 20],
        [3, 3, 10, 10, 20, 20, 38, 39],
        [VISIBLE, OCCLUDED, VISIBLE, VISIBLE, VISIBLE, VISIBLE, VISIBLE, TRUNCATED],
    )


def test_detect_and_dispatch(tmp_path):
    for root, name, reader in ((INSHOP, "inshop", read_inshop), (C2S, "consumer2shop", read_consumer2shop), (FLD, "fld", read_fld)):
        assert detect_benchmark(root) == name
        pd.testing.assert_frame_equal(read_benchmark(root), reader(root))
    with pytest.raises(AnnotationError, match="no DeepFashion benchmark found"):
        detect_benchmark(tmp_path)


def test_label_helpers():
    frame = read_inshop(INSHOP)
    to_index, items = item_label_maps(frame)
    assert items == ["id_00000002", "id_00000007", "id_00000010"]
    assert [to_index[i] for i in frame["item_id"]] == [0, 0, 1, 1, 2, 2]
    assert category_names(frame) == ["Dresses", "Shorts", "Tees_Tanks"]
    assert item_label_maps(read_fld(FLD)) == ({}, [])


# ------------------------------------------------------------------------------------------
# Malformed input: AnnotationError naming the file and the line
# ------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def copy_root(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def edit_line(path: Path, contains: str, edit) -> int:
    """Apply ``edit`` to the one line containing ``contains``; return its 1-based line number."""
    lines = path.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if contains in line]
    assert len(hits) == 1, (contains, hits)
    lines[hits[0]] = edit(lines[hits[0]])
    path.write_text("\n".join(lines) + "\n")
    return hits[0] + 1


def drop_last_value(line: str) -> str:
    return line.rsplit(maxsplit=1)[0]


def replace_token(index: int, value: str):
    def edit(line: str) -> str:
        tokens = line.split()
        tokens[index] = value
        return "  ".join(tokens)

    return edit


TEE = "01_1_front.jpg  "
MALFORMED = {
    # name: (fixture root, file, line containing, edit, reader, expected words in the message)
    "landmark row shorter than its clothes type": (INSHOP, "Anno/list_landmarks_inshop.txt", "Tees_Tanks/id_00000007/01_1_front", drop_last_value, read_inshop, "expected 3 + 18 = 21 values (clothes_type 1, upper-body, has 6 landmarks), found 20 values"),
    "landmark row longer than its clothes type": (INSHOP, "Anno/list_landmarks_inshop.txt", "Shorts/id_00000010/01_1_front", lambda l: l + "  0 1 1", read_inshop, "expected 3 + 12 = 15 values (clothes_type 2, lower-body, has 4 landmarks), found 18 values"),
    "bbox row with 6 values": (INSHOP, "Anno/list_bbox_inshop.txt", "Dresses/id_00000002/02_2_side", drop_last_value, read_inshop, "expected 7 values (image_name clothes_type pose_type x_1 y_1 x_2 y_2), found 6 values"),
    "bbox row with 8 values": (INSHOP, "Anno/list_bbox_inshop.txt", "Shorts/id_00000010/01_1_front", lambda l: l + " 9", read_inshop, "found 8 values"),
    "landmark row past the longest format": (FLD, "Anno/list_landmarks.txt", "img_00000003", lambda l: l + " 0 1 1", read_fld, "expected at most 27 values"),
    "landmark row without clothes type": (FLD, "Anno/list_landmarks.txt", "img_00000002", lambda l: l.split()[0] + " 2", read_fld, "expected at least 3 values"),
    "nan coordinate": (C2S, "Anno/list_landmarks_consumer2shop.txt", "Dresses/id_00000009/shop_01", replace_token(5, "nan"), read_consumer2shop, "'nan'"),
    "item id missing from partition row": (C2S, "Eval/list_eval_partition.txt", "comsumer_02", lambda l: " ".join(l.split()[:2] + ["test"]), read_consumer2shop, "expected 4 values (image_pair_name_1 image_pair_name_2 item_id evaluation_status), found 3 values"),
    "unknown clothes type in landmarks": (INSHOP, "Anno/list_landmarks_inshop.txt", "Dresses/id_00000002/02_1_front", replace_token(1, "4"), read_inshop, "unknown clothes_type '4'"),
    "unknown clothes type in bbox": (C2S, "Anno/list_bbox_consumer2shop.txt", "Tees/id_00000001/shop_02", replace_token(1, "0"), read_consumer2shop, "unknown clothes_type '0'"),
    "bad split name": (INSHOP, "Eval/list_eval_partition.txt", "Shorts/id_00000010/03_4_full", replace_token(2, "test"), read_inshop, "bad evaluation_status 'test'"),
    "bad consumer2shop split": (C2S, "Eval/list_eval_partition.txt", "Trousers/id_00000005/comsumer_01", replace_token(3, "gallery"), read_consumer2shop, "bad evaluation_status"),
    "bad fld split": (FLD, "Eval/list_eval_partition.txt", "img_00000002", replace_token(1, "Val"), read_fld, "bad evaluation_status 'Val'"),
    "unparseable coordinate": (INSHOP, "Anno/list_bbox_inshop.txt", "Tees_Tanks/id_00000007/01_3_back", replace_token(5, "3q"), read_inshop, "'3q' is not a number"),
    "visibility outside 0-2": (FLD, "Anno/list_landmarks.txt", "img_00000001", replace_token(6, "3"), read_fld, "landmark_visibility_2 is '3'"),
    "fractional visibility": (FLD, "Anno/list_landmarks.txt", "img_00000003", replace_token(3, "0.5"), read_fld, "landmark_visibility_1 is '0.5'"),
    "empty bbox after clipping": (FLD, "Anno/list_bbox.txt", "img_00000002", replace_token(3, "1"), read_fld, "empty after clipping"),
    "fld bbox row with 4 values": (FLD, "Anno/list_bbox.txt", "img_00000003", drop_last_value, read_fld, "expected 5 values"),
    "attribute labels one short": (INSHOP, "Anno/list_attr_items.txt", "id_00000007", drop_last_value, read_inshop, "expected item_id then 3 attribute labels (one per attribute of list_attr_cloth.txt), found 3 values"),
    "attribute label outside 1/-1/0": (C2S, "Anno/list_attr_items.txt", "id_00000005", replace_token(1, "2"), read_consumer2shop, "attribute label 1 is '2'"),
    "item split differs between pairs": (C2S, "Eval/list_eval_partition.txt", "comsumer_02", replace_token(3, "val"), read_consumer2shop, "item id_00000009 is in split 'val'"),
    "source_type contradicts the partition": (C2S, "Anno/list_bbox_consumer2shop.txt", "Tees/id_00000001/shop_01", replace_token(2, "2"), read_consumer2shop, "contradicts"),
    "clothes type differs between files": (INSHOP, "Anno/list_bbox_inshop.txt", "Tees_Tanks/id_00000007/01_3_back", replace_token(1, "3"), read_inshop, None),
    "item missing from the item list": (INSHOP, "Eval/list_eval_partition.txt", "02_2_side", replace_token(1, "id_00000099"), read_inshop, "is not listed in"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_raises_with_file_and_line(case, tmp_path):
    source, relative, contains, edit, reader, words = MALFORMED[case]
    root = copy_root(source, tmp_path)
    path = root / relative
    line = edit_line(path, contains, edit)
    expected_path, expected_line = path, line
    if case == "clothes type differs between files":  # reported at the landmark row, which names the bbox line
        expected_path = root / "Anno/list_landmarks_inshop.txt"
        expected_line = next(i for i, l in enumerate(expected_path.read_text().splitlines(), 1) if "01_3_back" in l)
        words = f"{path}:{line}"
    with pytest.raises(AnnotationError) as caught:
        reader(root)
    error = caught.value
    assert (error.path, error.line) == (str(expected_path), expected_line)
    assert str(error).startswith(f"{expected_path}:{expected_line}: ")
    assert words in str(error)


def test_count_line_mismatch_is_reported_on_line_1(tmp_path):
    root = copy_root(INSHOP, tmp_path)
    path = root / "Anno/list_landmarks_inshop.txt"
    edit_line(path, "img/WOMEN/Shorts/id_00000010/03_4_full.jpg", lambda line: "")  # 5 declared, 4 left
    with pytest.raises(AnnotationError) as caught:
        read_inshop(root)
    assert (caught.value.path, caught.value.line) == (str(path), 1)
    assert "says 5 records but the file has 4" in str(caught.value)


def test_every_row_too_long_is_not_taken_for_an_index_column(tmp_path):
    # pandas would silently turn a leading extra column into the index; the reader must refuse
    root = copy_root(FLD, tmp_path)
    path = root / "Anno/list_bbox.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [line + " 7" for line in lines[2:]]) + "\n")
    with pytest.raises(AnnotationError) as caught:
        read_fld(root)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert "expected 5 values (image_name x_1 y_1 x_2 y_2), found 6 values" in str(caught.value)


def test_blank_lines_keep_line_numbers(tmp_path):
    root = copy_root(FLD, tmp_path)
    path = root / "Eval/list_eval_partition.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["", "   "] + lines[3:4] + [lines[4].replace("test", "tset")]) + "\n\n")
    with pytest.raises(AnnotationError) as caught:
        read_fld(root)
    assert caught.value.line == 7 and "bad evaluation_status 'tset'" in str(caught.value)


def test_missing_header_line_is_reported(tmp_path):
    root = copy_root(FLD, tmp_path)
    path = root / "Eval/list_eval_partition.txt"
    path.write_text("2\nimg/img_00000001.jpg train\nimg/img_00000002.jpg val\n")
    with pytest.raises(AnnotationError, match=r"list_eval_partition.txt:2: expected the header line"):
        read_fld(root)


def test_missing_image_names_the_image_and_the_listing_line(tmp_path):
    root = copy_root(C2S, tmp_path)
    image = "img/DRESSES/Dresses/id_00000009/shop_01.jpg"
    (root / image).unlink()
    partition = root / "Eval/list_eval_partition.txt"
    first_listed = next(i for i, l in enumerate(partition.read_text().splitlines(), 1) if image in l)
    with pytest.raises(AnnotationError) as caught:
        read_consumer2shop(root)
    assert (caught.value.path, caught.value.line) == (str(partition), first_listed)
    assert image in str(caught.value) and "missing" in str(caught.value)
    assert len(read_consumer2shop(root, verify_images=False)) == 8  # the check is what failed


def test_missing_required_file_is_named(tmp_path):
    root = copy_root(INSHOP, tmp_path)
    (root / "Anno/list_bbox_inshop.txt").unlink()
    with pytest.raises(AnnotationError, match="list_bbox_inshop.txt is missing") as caught:
        read_inshop(root)
    assert caught.value.line is None
    root_fld = copy_root(FLD, tmp_path)
    (root_fld / "Anno/list_landmarks.txt").unlink()
    with pytest.raises(AnnotationError, match="list_landmarks.txt is missing"):
        read_fld(root_fld)


def test_attribute_items_without_attribute_names_is_an_error(tmp_path):
    root = copy_root(INSHOP, tmp_path)
    (root / "Anno/list_attr_cloth.txt").unlink()
    with pytest.raises(AnnotationError, match="list_attr_cloth.txt is missing"):
        read_inshop(root)


# ------------------------------------------------------------------------------------------
# Round trip through the synthetic benchmark generator
# ------------------------------------------------------------------------------------------


def partition_images(path: Path, name_columns: int) -> list[str]:
    """Distinct image names of a partition file, read independently of the readers."""
    lines = path.read_text().splitlines()[2:]
    names = [name for line in lines if line.split() for name in line.split()[:name_columns]]
    return list(dict.fromkeys(names))


def test_readers_read_the_synthetic_benchmark(tmp_path):
    from fashionnet.data.synthetic import generate_synthetic_deepfashion

    generate_synthetic_deepfashion(tmp_path, size="tiny", seed=0)
    for benchmark, reader, name_columns, splits in (
        ("inshop", read_inshop, 1, schema.SPLITS_INSHOP),
        ("consumer2shop", read_consumer2shop, 2, schema.SPLITS_CONSUMER2SHOP),
    ):
        root = tmp_path / benchmark
        assert detect_benchmark(root) == benchmark
        frame = reader(root)  # verify_images: every listed image exists
        images = partition_images(root / "Eval/list_eval_partition.txt", name_columns)
        assert len(frame) == len(images) and set(frame["image_path"]) == set(images)
        assert set(frame["split"]) == set(splits)
        assert set(frame["clothes_type"].dropna()) == {1, 2, 3}
        xy, vis = schema.landmarks_of(frame)
        sizes = np.array([image_size(root, image) for image in frame["image_path"]], dtype=np.float32)
        present = vis != ABSENT
        assert present.any()
        assert np.isfinite(xy[present]).all()
        inside = (xy >= 0).all(axis=-1) & (xy[..., 0] <= sizes[:, None, 0]) & (xy[..., 1] <= sizes[:, None, 1])
        assert inside[present].all()
        boxes = schema.bboxes_of(frame)
        assert (boxes[:, 2] <= sizes[:, 0]).all() and (boxes[:, 3] <= sizes[:, 1]).all()
        if benchmark == "consumer2shop":
            assert set(frame["source"]) == {"shop", "consumer"}


# ------------------------------------------------------------------------------------------
# Paths that leave the root, images without annotation rows
# ------------------------------------------------------------------------------------------

ESCAPES = {
    "inshop": (INSHOP, "Shorts/id_00000010/01_1_front", 0, read_inshop),
    "consumer2shop consumer photo": (C2S, "comsumer_02", 0, read_consumer2shop),
    "consumer2shop shop photo": (C2S, "comsumer_02", 1, read_consumer2shop),
    "fld": (FLD, "img_00000002", 0, read_fld),
}


@pytest.mark.parametrize("bad_path", ["img/../../outside.jpg", "/etc/passwd", "..\\secret.jpg"])
@pytest.mark.parametrize("case", list(ESCAPES), ids=list(ESCAPES))
def test_an_image_path_that_leaves_the_root_is_refused_with_file_and_line(case, bad_path, tmp_path):
    source, contains, column, reader = ESCAPES[case]
    root = copy_root(source, tmp_path)
    partition = root / "Eval/list_eval_partition.txt"
    line = edit_line(partition, contains, replace_token(column, bad_path))
    with pytest.raises(AnnotationError) as caught:
        reader(root, verify_images=False)
    assert (caught.value.path, caught.value.line) == (str(partition), line)
    assert "leaves the dataset root" in str(caught.value) and repr(bad_path) in str(caught.value)


def test_paths_that_only_look_like_dots_are_fine(tmp_path):
    root = copy_root(FLD, tmp_path)
    partition = root / "Eval/list_eval_partition.txt"
    old = next(l.split()[0] for l in partition.read_text().splitlines() if "img_00000002" in l)
    edit_line(partition, "img_00000002", replace_token(0, "img/a..b/..jpg"))
    for name in ("Anno/list_landmarks.txt", "Anno/list_bbox.txt"):
        if (root / name).exists():
            (root / name).write_text((root / name).read_text().replace(old, "img/a..b/..jpg"))
    assert "img/a..b/..jpg" in set(read_fld(root, verify_images=False)["image_path"])


def test_images_without_annotation_rows_are_counted_in_a_warning():
    with pytest.warns(AnnotationWarning, match=r"list_landmarks_consumer2shop.txt: 2 of the 8 images listed in .* have no row here") as caught:
        read_consumer2shop(C2S)
    assert len([w for w in caught if issubclass(w.category, AnnotationWarning)]) == 1


def test_complete_annotations_give_no_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)
        read_fld(FLD)
