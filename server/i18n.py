"""Staff interface text, Vietnamese first. Templates call ``t(key)``."""

from __future__ import annotations

TEXT: dict[str, tuple[str, str]] = {
    "app_title": ("Số hóa — Lưu trữ lịch sử", "Sohoa — Historical archive"),
    "batches": ("Lô tài liệu đã nhận", "Received batches"),
    "batch": ("Lô", "Batch"),
    "device": ("Thiết bị", "Device"),
    "devices": ("Thiết bị", "Devices"),
    "received": ("Nhận lúc", "Received"),
    "pages": ("Trang", "Pages"),
    "page": ("Trang", "Page"),
    "complete": ("Đã nhận đủ", "Complete"),
    "incomplete": ("Đang nhận", "Arriving"),
    "no_batches": ("Chưa có lô nào.", "No batch yet."),
    "ocr_text": ("Văn bản nhận dạng (OCR)", "Recognised text (OCR)"),
    "no_text": ("(chưa có văn bản)", "(no text yet)"),
    "search": ("Tìm kiếm", "Search"),
    "search_hint": ("Gõ có dấu hoặc không dấu…", "Type with or without diacritics…"),
    "results": ("Kết quả", "Results"),
    "no_results": ("Không tìm thấy.", "Nothing found."),
    "login": ("Đăng nhập", "Log in"),
    "token": ("Mã truy cập", "Access token"),
    "login_hint": (
        "Dán mã truy cập do quản trị viên cấp (sohoa-server token create).",
        "Paste the access token an administrator gave you (sohoa-server token create).",
    ),
    "login_failed": ("Mã truy cập không đúng.", "Wrong access token."),
    "logout": ("Đăng xuất", "Log out"),
    "flags": ("Cần xem lại", "Needs review"),
    "confidence": ("Độ tin cậy OCR", "OCR confidence"),
    "status_online": ("Đang hoạt động", "Online"),
    "status_offline": ("Mất kết nối", "Offline"),
    "status_unknown": ("Chưa rõ", "Unknown"),
    "last_seen": ("Lần cuối", "Last seen"),
    "original": ("Bản gốc", "Original"),
    "image": ("Ảnh lưu trữ", "Archival image"),
    "flag_blank": ("trang trắng", "blank page"),
    "flag_low_confidence": ("OCR kém tin cậy", "low OCR confidence"),
    "flag_below_200dpi": ("dưới 200 dpi", "below 200 dpi"),
    "flag_rotated": ("đã xoay", "rotated"),
    "flag_ocr_retry": ("OCR chạy lại", "OCR retried"),
    "flag_processing_failed": ("xử lý lỗi", "processing failed"),
    "language": ("English", "Tiếng Việt"),
}


def t(key: str, lang: str = "vi") -> str:
    vi, en = TEXT.get(key, (key, key))
    return vi if lang == "vi" else en
