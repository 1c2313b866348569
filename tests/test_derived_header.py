"""The derived-object header policy (ctdenoise.io.derived_header) on Datasets without any pixel data."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, JPEGBaseline8Bit

from ctdenoise.io.derived_header import (
    DerivedSeries,
    derivation_time,
    derived_classic_header,
    derived_enhanced_header,
    derived_series_number,
)
from ctdenoise.io.uids import INSTANCE_CREATOR_UID, derivation_key, derived_uid_for, new_uid

CREATED = datetime(2026, 12, 4, 5, 6, 7, 891011)
SERIES = DerivedSeries(series_uid="1.2.3.9", series_number=3042, description_suffix="[denoised]",
                       derivation_description="ctdenoise test model, strength 1", created=CREATED)


def classic_source(**extra) -> Dataset:
    """A CT slice header: patient, study, series, image attributes, a private tag; no PixelData."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4.1"
    ds.StudyInstanceUID = "1.2.3.1"
    ds.SeriesInstanceUID = "1.2.3.2"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P1"
    ds.StudyDate, ds.AcquisitionDate = "20240101", "20240101"
    ds.SeriesNumber = 3
    ds.SeriesDescription = "Abdomen 1.0 B30f"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]
    ds.InstanceCreatorUID = "9.9.9"
    ds.LargestImagePixelValue = 4095
    ds.add_new(0x00291010, "LO", "vendor private")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.SourceApplicationEntityTitle = "SCANNER"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def test_classic_header_sets_the_new_attributes_and_keeps_every_other_one():
    source = classic_source()
    kept = copy.deepcopy(source)
    ds = derived_classic_header(source, SERIES, "1.2.3.9.1")
    assert "PixelData" not in ds and source == kept  # no pixels needed; the source is not modified
    assert (ds.SOPInstanceUID, ds.file_meta.MediaStorageSOPInstanceUID) == ("1.2.3.9.1", "1.2.3.9.1")
    assert (ds.SeriesInstanceUID, ds.SeriesNumber) == ("1.2.3.9", 3042)
    assert ds.SeriesDescription == "Abdomen 1.0 B30f [denoised]"
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL", "CT_SOM5 SPI"]
    assert ds.DerivationDescription == "ctdenoise test model, strength 1"
    assert [item.CodeValue for item in ds.DerivationCodeSequence] == ["113087"]
    [reference] = ds.SourceImageSequence
    assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == (CTImageStorage, "1.2.3.4.1")
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    for keyword in ("InstanceCreationDate", "ContentDate", "SeriesDate"):
        assert ds.data_element(keyword).value == "20261204"
    for keyword in ("InstanceCreationTime", "ContentTime", "SeriesTime"):
        assert ds.data_element(keyword).value == "050607.891011"
    assert ds.InstanceCreatorUID == INSTANCE_CREATOR_UID != source.InstanceCreatorUID
    assert "LargestImagePixelValue" not in ds and "SourceApplicationEntityTitle" not in ds.file_meta
    assert (ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.StudyDate) == ("Test^Patient", "P1", "1.2.3.1", "20240101")
    assert ds[0x00291010].value == "vendor private"


def test_classic_header_keeps_the_source_history_first():
    earlier = Dataset()
    earlier.CodeValue, earlier.CodingSchemeDesignator, earlier.CodeMeaning = "113040", "DCM", "Lossy Compression"
    source = classic_source(DerivationDescription="lossy JPEG", DerivationCodeSequence=DicomSequence([earlier]))
    ds = derived_classic_header(source, SERIES, "1.2.3.9.1")
    assert ds.DerivationDescription == "lossy JPEG; ctdenoise test model, strength 1"
    assert [item.CodeValue for item in ds.DerivationCodeSequence] == ["113040", "113087"]


def test_a_source_in_a_lossy_syntax_gets_its_lossy_record():
    source = classic_source()
    source.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = derived_classic_header(source, SERIES, "1.2.3.9.1")
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # the writer sets the syntax it encodes in
    assert "LossyImageCompression" not in derived_classic_header(classic_source(), SERIES, "1.2.3.9.1")


def test_series_description_suffix_is_never_shortened():
    ds = derived_classic_header(classic_source(SeriesDescription="x" * 64), SERIES, "1.2.3.9.1")
    assert len(ds.SeriesDescription) == 64 and ds.SeriesDescription.endswith(" [denoised]")


def test_enhanced_header_derives_each_frame_after_its_own_history():
    source = classic_source(SOPClassUID=EnhancedCTImageStorage, ImageType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"])
    frames = []
    for _ in range(2):
        frame_type = Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        group = Dataset()
        group.CTImageFrameTypeSequence = DicomSequence([frame_type])
        earlier = Dataset()
        earlier.DerivationDescription = "earlier"
        group.DerivationImageSequence = DicomSequence([earlier])
        frames.append(group)
    source.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    source.SharedFunctionalGroupsSequence = DicomSequence([Dataset()])
    ds = derived_enhanced_header(source, SERIES, "1.2.3.9.1")
    assert list(ds.ImageType) == ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    evidence = ds.SourceImageEvidenceSequence[0]
    assert evidence.StudyInstanceUID == "1.2.3.1"
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == "1.2.3.4.1"
    for number, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
        assert list(group.CTImageFrameTypeSequence[0].FrameType) == ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
        earlier, ours = group.DerivationImageSequence
        assert earlier.DerivationDescription == "earlier"
        assert ours.DerivationDescription == SERIES.derivation_description
        assert ours.SourceImageSequence[0].ReferencedFrameNumber == number
    assert len(source.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence) == 1  # source untouched


def test_derived_series_number_is_the_source_number_then_a_stable_index():
    source = classic_source()
    number = derived_series_number(source, "model a")
    assert 3001 <= number <= 3999 and number == derived_series_number(source, "model a")
    assert number != derived_series_number(source, "model b")
    assert 1 <= derived_series_number(classic_source(SeriesNumber=-4), "model a") <= 999


def test_derivation_time_is_in_the_source_timezone_when_it_has_one():
    assert derivation_time(classic_source(TimezoneOffsetFromUTC="-0500")).utcoffset() == -timedelta(hours=5)
    assert derivation_time(classic_source(TimezoneOffsetFromUTC="+9999")).tzinfo is None
    assert derivation_time(classic_source()).tzinfo is None


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_derived_uids_are_a_pure_function_of_key_and_source(precision):
    key = derivation_key("model@abc", strength=1.0, precision=precision, backend="torch")
    rule = derived_uid_for(key)
    assert rule("1.2.3") == rule("1.2.3") != rule("1.2.4")
    assert rule("1.2.3") != derived_uid_for(derivation_key("model@abc", strength=0.5, precision=precision,
                                                            backend="torch"))("1.2.3")
    assert new_uid() != new_uid()


def test_created_time_with_offset_is_written_as_its_local_time():
    created = datetime(2026, 1, 2, 23, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    series = DerivedSeries("1.2.3.9", 1, "x", "y", created)
    ds = derived_classic_header(classic_source(), series, "1.2.3.9.1")
    assert (ds.ContentDate, ds.ContentTime) == ("20260102", "230000.000000")
