"""Staff interface text, Vietnamese first. Templates call ``t(key)`` and format numbers with
``num`` (:func:`number`)."""

from __future__ import annotations

import math

from server.web.station_errors import STATION_ERRORS

TEXT: dict[str, tuple[str, str]] = {
    "fixity_damage": (
        "Phát hiện tệp hỏng trong kho lưu trữ",
        "Damaged files found in the store",
    ),
    "fixity_damage_hint": (
        "Các tệp này không còn khớp mã băm SHA-256 ghi lúc tiếp nhận: không thể xuất hồ sơ "
        "chứa chúng. Cán bộ kỹ thuật chạy “sohoa-server fixity repair” để lấy lại bản tốt "
        "từ bản sao lưu; tệp không có bản tốt thì yêu cầu trạm gửi lại hoặc quét lại.",
        "These files no longer match the SHA-256 recorded at ingest: hồ sơ holding them "
        "cannot be exported. The technician runs “sohoa-server fixity repair” to bring the "
        "good copies back from the backups; for a file with none, ask for a re-send or a "
        "re-scan.",
    ),
    "fixity_file": ("Tệp", "File"),
    "fixity_outcome": ("Kết quả kiểm tra", "Check result"),
    "fixity_when": ("Kiểm tra lúc", "Checked"),
    "fixity_fail": ("Sai mã băm", "Checksum mismatch"),
    "fixity_missing": ("Mất tệp", "File missing"),
    "app_title": ("Số hóa — Lưu trữ lịch sử", "Sohoa — Historical archive"),
    "batches": ("Lô tài liệu đã nhận", "Received batches"),
    "batch": ("Lô", "Batch"),
    "continues_batch": ("Quét tiếp của lô", "Continues batch"),
    "after_page": ("sau trang", "after page"),
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
        "Dán mã truy cập do quản trị viên cấp.",
        "Paste the access token an administrator gave you.",
    ),
    "login_failed": ("Mã truy cập không đúng.", "Wrong access token."),
    "logout": ("Đăng xuất", "Log out"),
    "flags": ("Cần xem lại", "Needs review"),
    "confidence": ("Độ tin cậy OCR", "OCR confidence"),
    "status_online": ("Đang hoạt động", "Online"),
    "status_offline": ("Mất kết nối", "Offline"),
    "status_unknown": ("Chưa rõ", "Unknown"),
    "last_seen": ("Lần cuối", "Last seen"),
    # The unaltered capture. "Bản gốc" is the paper original, not its scan (TT 05/2025).
    "original": ("Ảnh quét gốc", "Original scan"),
    "image": ("Ảnh lưu trữ", "Archival image"),
    # The page viewer when an image does not load (the store does not answer: a 503).
    "image_unavailable": (
        "Không tải được ảnh trang: kho tệp không trả lời hoặc đang bận. Thử lại sau ít giây.",
        "The page image did not load: the file store does not answer or is busy. Try again"
        " in a few seconds.",
    ),
    "image_retry": ("Thử lại", "Try again"),
    "flag_blank": ("trang trắng", "blank page"),
    "flag_low_confidence": ("OCR kém tin cậy", "low OCR confidence"),
    "flag_review": ("chữ nhận dạng có thể sai", "OCR text likely wrong"),
    "quality_score": ("Điểm chữ", "Text score"),
    "reason_no_text": ("không đọc được chữ", "no text read"),
    "reason_implausible_text": ("nhiều từ không phải tiếng Việt", "many non-Vietnamese words"),
    "reason_low_confidence": ("độ tin cậy thấp", "low confidence"),
    "reason_unsure_words": ("nhiều từ không chắc", "many unsure words"),
    "reason_dot_matrix": ("chữ in kim: chữ số dễ đọc nhầm", "dot-matrix print: digits misread"),
    "reason_low_score": ("điểm chữ thấp", "low text score"),
    "reason_junk_line": (
        "có dòng phần lớn là ký hiệu, không phải chữ",
        "a line mostly of marks, not words",
    ),
    "reason_unread_text": (
        "có chữ trên trang không được nhận dạng",
        "text on the page was left unread",
    ),
    "flag_below_200dpi": ("dưới 200 dpi", "below 200 dpi"),
    "flag_dpi_unknown": ("không rõ dpi", "dpi unknown"),
    "flag_rotated": ("đã xoay", "rotated"),
    "flag_ocr_retry": ("OCR chạy lại", "OCR retried"),
    "flag_processing_failed": ("xử lý lỗi", "processing failed"),
    "flag_legal_fail": ("không đạt kiểm tra pháp lý", "failed the legal check"),
    "flag_not_colour": ("không quét màu", "not scanned in colour"),
    "flag_separator": ("tờ phân cách (mã QR)", "separator sheet (QR code)"),
    "user_name": ("Tên đăng nhập", "User name"),
    "password": ("Mật khẩu", "Password"),
    "login_bad": ("Sai tên đăng nhập hoặc mật khẩu.", "Wrong user name or password."),
    "login_locked": (
        "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {s} giây.",
        "Too many failed logins. Try again in {s} seconds.",
    ),
    "login_link_as": (
        "Đường dẫn đăng nhập một lần cho tài khoản “{user}”. Bấm để đăng nhập.",
        "A one-time login link for the account “{user}”. Click to log in.",
    ),
    "login_link_bad": (
        "Đường dẫn đăng nhập đã dùng, đã hết hạn hoặc không đúng. Xin quản trị viên đường dẫn"
        " mới (sohoa-server login-link).",
        "This login link was used, has expired or is wrong. Ask an administrator for a new one"
        " (sohoa-server login-link).",
    ),
    "or_token": ("Hoặc dùng mã truy cập (API):", "Or use an access token (API):"),
    "forbidden": (
        "Tài khoản của bạn không có quyền này (cần vai trò {role}).",
        "Your account may not do this (needs the {role} role).",
    ),
    "csrf_failed": (
        "Biểu mẫu đã hết hạn. Vui lòng tải lại trang và thử lại.",
        "The form has expired. Reload the page and try again.",
    ),
    "dashboard": ("Tổng quan", "Dashboard"),
    "fleet": ("Các trạm quét", "Scan stations"),
    # The fleet lists (server.archive.fleet_view): attention first, counts per state, paged.
    "fleet_state_error": ("Báo lỗi", "Reporting an error"),
    "fleet_state_offline_long": ("Mất kết nối hơn 3 ngày", "Offline for over 3 days"),
    "fleet_state_disk_low": ("Sắp đầy ổ đĩa", "Disk nearly full"),
    "fleet_state_backlog": ("Tồn đọng chưa gửi", "Backlog not sent"),
    "fleet_state_pending": ("Chờ đăng ký", "Pending enrolment"),
    "fleet_state_revoked": ("Đã thu hồi", "Revoked"),
    "fleet_state_active": ("Đã đăng ký", "Enrolled"),
    "fleet_state_online": ("Đang hoạt động", "Online"),
    "fleet_state_offline": ("Mất kết nối", "Offline"),
    "fleet_all": ("Tất cả", "All"),
    "fleet_attention": ("Cần chú ý", "Needs attention"),
    "fleet_attention_count": ("{n} trạm cần chú ý", "{n} stations need attention"),
    "fleet_find": (
        "Tên trạm hoặc xã (có dấu hoặc không dấu)",
        "Station or commune name (with or without diacritics)",
    ),
    "fleet_filter": ("Lọc", "Filter"),
    "fleet_clear": ("Bỏ lọc", "Clear filters"),
    "fleet_in_commune": ("Xã: {commune}", "Commune: {commune}"),
    "fleet_page_of": (
        "Trang {page}/{pages} · {n} trạm khớp bộ lọc",
        "Page {page} of {pages} · {n} stations match",
    ),
    "fleet_no_match": ("Không có trạm nào khớp bộ lọc.", "No station matches the filters."),
    "fleet_details": ("Chi tiết trạm", "Station details"),
    "fleet_registry_state": ("Trạng thái đăng ký", "Registry state"),
    "fleet_not_registered": ("chưa đăng ký", "not registered"),
    "fleet_agent_state": ("Trạng thái máy trạm", "Station activity"),
    "fleet_queue_bytes": ("Chờ gửi (dung lượng)", "Waiting to send (bytes)"),
    "fleet_first_seen": ("Kết nối lần đầu", "First seen"),
    "fleet_district": ("Huyện (trước 2025)", "District (before 2025)"),
    "fleet_commune_hint": (
        "Nhãn xã/phường/đặc khu của trạm trên bảng điều khiển (ghi nhật ký).",
        "The station's commune label on the dashboard (audited).",
    ),
    "alerts": ("Cảnh báo", "Alerts"),
    "ingest_trouble": (
        "Kho lưu trữ hiện không ghi được dữ liệu (ổ đĩa đầy?). Các trạm được yêu cầu chờ rồi "
        "gửi lại; không mất trang nào. Gọi cán bộ kỹ thuật.",
        "The archive cannot store data right now (disk full?). Stations are told to wait and "
        "send again; no page is lost. Call the technician.",
    ),
    "alert_fixity": ("Tệp trong kho sai mã băm", "Stored file failed its fixity check"),
    "alert_archive_cannot_store": ("Kho không ghi được dữ liệu", "Archive cannot store"),
    "alert_archive_stores_again": ("Kho ghi được dữ liệu trở lại", "Archive stores again"),
    "alert_backup_damaged": ("Kho sao lưu bị hỏng", "Backup repository damaged"),
    "backlog": ("Chờ gửi (trang)", "Waiting to send (pages)"),
    "disk_free": ("Dung lượng trống", "Disk free"),
    "last_error": ("Lỗi gần nhất", "Last error"),
    "agent_version": ("Phiên bản", "Version"),
    "progress": ("Tiến độ", "Progress"),
    "no_devices": ("Chưa có trạm quét nào kết nối.", "No scan station has connected yet."),
    "view": ("Xem", "View"),
    "zoom_in": ("Phóng to", "Zoom in"),
    "zoom_out": ("Thu nhỏ", "Zoom out"),
    "zoom_fit": ("Vừa khung", "Fit"),
    "unread_boxes": ("Khung chữ chưa nhận dạng: {n}", "Text left unread: {n} boxes"),
    "unread_boxes_hint": (
        "Bật/tắt khung đỏ quanh chỗ có chữ mà máy không nhận dạng được",
        "Show or hide the red boxes around text the OCR left out",
    ),
    "unread_box_title": (
        "Có chữ ở đây nhưng máy không nhận dạng được: hãy đọc trên ảnh",
        "Text here was not recognised: read it on the image",
    ),
    "prev_page": ("Trang trước", "Previous page"),
    "next_page": ("Trang sau", "Next page"),
    "review": ("Cần xem lại", "Review"),
    "review_queue": ("Trang cần xem lại", "Pages to review"),
    "review_empty": ("Không có trang nào cần xem lại.", "Nothing to review."),
    "accept": ("Chấp nhận", "Accept"),
    "review_hint": (
        "Chấp nhận trang, xoay trang (tạo bản lưu trữ mới đã xoay, giữ nguyên bản gốc), hoặc "
        "yêu cầu trạm quét của xã quét lại trang.",
        "Accept a page, rotate it (a new, turned archival version; the original is kept), or "
        "ask the commune's scan station to scan it again.",
    ),
    "rotate": ("Xoay", "Rotate"),
    "test_scanner_note": (
        "Máy quét thử nghiệm SANE (test): mỗi trang là ảnh mẫu màu do phần mềm vẽ, không phải "
        "giấy có chữ. Các cờ cần xem lại của những trang này (không đọc được chữ, trang trắng…) "
        "là đúng, không phải lỗi.",
        "SANE's test scanner: every page is a colour pattern drawn by software, not paper with "
        "text. The review flags on these pages (no readable text, blank…) are expected, not a "
        "fault.",
    ),
    "replaced_by": (
        "Trang này đã được quét lại; bản mới:",
        "This page was scanned again; new scan:",
    ),
    "replaces": ("Bản quét lại của", "Re-scan of"),
    "rescan_batch_of": ("Lô quét lại cho", "Re-scan batch for"),
    "old_scan_kept": ("bản cũ vẫn được lưu", "the old scan is kept"),
    "redo_title": ("Làm lại trang từ bản chụp", "Page redone from its capture"),
    "redo_hint": (
        "Kết quả xử lý lại (làm sạch, OCR) từ bản chụp gốc, đặt cạnh kết quả của trạm quét. "
        "Chọn bản đọc tốt hơn; lựa chọn được ghi vào nhật ký.",
        "The page cleaned and read again from the station's capture, beside the station's "
        "result. Choose the better reading; the choice is logged.",
    ),
    "redo_none": ("Trang này chưa được làm lại. Trên máy chủ:", "Not redone yet. On the server:"),
    "redo_result": ("Kết quả làm lại", "Redone result"),
    "redo_old": ("Kết quả của trạm quét", "The station's result"),
    "redo_new": ("Kết quả làm lại", "Redone result"),
    "redo_choose_new": ("Chọn kết quả làm lại", "Choose the redone result"),
    "redo_choose_old": ("Giữ kết quả của trạm", "Keep the station's result"),
    "redo_chosen_new": ("Đã chọn kết quả làm lại", "Chosen: the redone result"),
    "redo_chosen_old": ("Đã giữ kết quả của trạm, so với", "Kept the station's result over"),
    "redo_link": ("Làm lại", "Redone"),
    "view_as": ("Xem", "Show"),
    "view_archival": ("Trang lưu trữ", "Archival page"),
    "view_capture": ("Bản chụp gốc", "Original capture"),
    "view_both": ("Cạnh nhau", "Side by side"),
    "rotated_view": ("Đang hiển thị xoay {deg}°", "Shown rotated by {deg}°"),
    "rescan_request": ("Yêu cầu quét lại", "Request a re-scan"),
    "rescan_reason": ("Lý do", "Reason"),
    "rescan_requests": ("Yêu cầu quét lại", "Re-scan requests"),
    "rescan_state": ("Trạng thái", "State"),
    "rescan_state_requested": ("Chờ gửi đến trạm quét", "Waiting to be sent"),
    "rescan_state_sent": ("Đang gửi", "Sending"),
    "rescan_state_acknowledged": (
        "Đã gửi (trạm quét nhận khi kết nối)",
        "Sent (the station gets it when online)",
    ),
    # Since 1 July 2025 the basic level is xã, phường or đặc khu.
    "communes": ("Tiến độ theo xã, phường, đặc khu", "Progress by commune"),
    "commune": ("Xã/phường/đặc khu", "Commune"),
    "commune_unknown": ("(chưa xác định xã/phường/đặc khu)", "(commune not known)"),
    "pages_received": ("Trang đã nhận", "Pages received"),
    "pages_described": ("Đã vào văn bản", "Described in documents"),
    "pages_flagged": ("Cần xem lại", "Flagged"),
    "per_day_chart": ("Trang nhận mỗi ngày, 30 ngày qua", "Pages received per day, last 30 days"),
    "set_commune": ("Đặt xã/phường/đặc khu", "Set commune"),
    "invalid_action": ("Thao tác không hợp lệ.", "Invalid action."),
    "ho_so": ("Hồ sơ", "Files (hồ sơ)"),
    "ho_so_list": ("Danh mục hồ sơ", "File catalogue"),
    "ho_so_new": ("Lập hồ sơ", "New file"),
    "ho_so_from_batch": ("Lập hồ sơ từ lô này", "Make a file from this batch"),
    "no_ho_so": ("Chưa có hồ sơ nào.", "No file yet."),
    "save": ("Lưu", "Save"),
    "saved": ("Đã lưu.", "Saved."),
    "invalid": ("Dữ liệu chưa hợp lệ:", "Please correct:"),
    "van_ban": ("Văn bản", "Documents"),
    "van_ban_add": ("Thêm văn bản", "Add a document"),
    "page_range": ("Các trang của lô (ví dụ 1-3, 5)", "Pages of the batch (e.g. 1-3, 5)"),
    "file_name": ("Tên tệp", "File name"),
    "export": ("Xuất", "Export"),
    "export_bag": ("Xuất gói BagIt", "Export BagIt bag"),
    "export_aip": ("Xuất gói nộp lưu TT 05/2025", "Export TT 05/2025 package"),
    # The handover (nộp lưu) list of files is the Mục lục hồ sơ nộp lưu (Luật Lưu trữ 2024).
    "export_csv": ("Mục lục hồ sơ nộp lưu (CSV)", "Handover file list (CSV)"),
    "export_xlsx": ("Mục lục hồ sơ nộp lưu (Excel)", "Handover file list (Excel)"),
    "export_commune": ("Xuất toàn bộ của cơ quan", "Export everything of the organisation"),
    "audit": ("Nhật ký hoạt động", "Activity log"),
    "audit_when": ("Thời điểm", "When"),
    "audit_who": ("Người dùng", "User"),
    "audit_action": ("Hành động", "Action"),
    "audit_target": ("Đối tượng", "Target"),
    "users": ("Người dùng", "Users"),
    "stations": ("Trạm quét", "Stations"),
    "station": ("Trạm", "Station"),
    "station_state": ("Trạng thái", "State"),
    "state_pending": ("chờ đăng ký", "pending"),
    "state_active": ("đang hoạt động", "active"),
    "state_revoked": ("đã thu hồi", "revoked"),
    "enrolled_at": ("Đăng ký lúc", "Enrolled"),
    "key_fingerprint": ("Vân tay khóa", "Key fingerprint"),
    "revoke": ("Thu hồi", "Revoke"),
    "revoke_confirm": (
        "Thu hồi trạm này? Trạm bị ngắt ngay và không gửi được nữa; trang đã nhận vẫn giữ.",
        "Revoke this station? It is cut off now and can send nothing more; pages received stay.",
    ),
    "revoke_broker_failed": (
        "Trạm đã bị Lưu trữ từ chối, nhưng chưa báo được cho máy chủ tin nhắn (broker). "
        "Thử lại khi broker hoạt động.",
        "The archive refuses the station now, but the broker could not be told. Try again "
        "once the broker is up.",
    ),
    "role": ("Vai trò", "Role"),
    "role_viewer": ("Xem", "viewer"),
    "role_archivist": ("Lưu trữ viên", "archivist"),
    "role_admin": ("Quản trị", "admin"),
    "meta_results": ("Hồ sơ, văn bản", "Files and documents"),
    "text_results": ("Nội dung trang", "Page text"),
    "about": ("khoảng", "about"),
    "not_found": ("Không tìm thấy.", "Not found."),
    "bad_request": (
        "Địa chỉ hoặc biểu mẫu có giá trị trang này không dùng được: {fields}.",
        "The address or form has a value this page cannot use: {fields}.",
    ),
    "database_busy": (
        "Hệ thống lưu trữ đang bận, chưa trả lời được yêu cầu này. Vui lòng thử lại sau ít phút.",
        "The archive is too busy to answer this right now. Please try again in a minute.",
    ),
    "not_open": (
        "Tài liệu này không mở cho tài khoản của bạn (chế độ sử dụng hoặc địa bàn).",
        "This record is not open to your account (its access regime or place).",
    ),
    "choose": ("— chọn —", "— choose —"),
    "fonds_title": ("Phông lưu trữ", "Archival fonds"),
    "fonds_code": ("Mã phông", "Fonds code"),
    "fonds_name": ("Tên phông", "Fonds name"),
    "fonds_organ": ("Mã định danh cơ quan", "Organisation id"),
    "fonds_level": ("Cấp", "Level"),
    "fonds_unit": ("Mã đơn vị hành chính", "Administrative unit code"),
    "fonds_unit_hint": (
        "Tìm mã bằng “sohoa-server fonds units TÊN” (trước và sau sắp xếp 2025).",
        "Find the code with “sohoa-server fonds units NAME” (before and after the 2025 "
        "reorganisation).",
    ),
    "fonds_commune": ("Xã/phường (nay; trước đây)", "Commune (now; formerly)"),
    "fonds_district": ("Huyện (trước 1/7/2025)", "District (before 1 July 2025)"),
    "fonds_province": ("Tỉnh (nay; trước đây)", "Province (now; formerly)"),
    "fonds_ended": ("đã kết thúc", "ended"),
    "fonds_status": ("Trạng thái", "Status"),
    "fonds_opened": ("Ngày bắt đầu", "Opened"),
    "fonds_closed": ("Ngày kết thúc", "Closed"),
    "fonds_merged_into": ("Hợp nhất vào", "Merged into"),
    "fonds_deadline": ("Hạn nộp lưu", "Handover due"),
    "fonds_close": ("Kết thúc phông", "Close the fonds"),
    "fonds_handover": ("Nộp lưu", "Handover"),
    "fonds_prepare": ("Lập hồ sơ nộp lưu", "Prepare the handover"),
    "fonds_prepared": ("Đã lập lúc", "Prepared"),
    "fonds_missing": ("Còn thiếu", "Missing"),
    "fonds_nothing_missing": ("Không còn thiếu gì", "Nothing missing"),
    "fonds_receiver_archive": ("Bên nhận", "Receiving archive"),
    "fonds_receiver": ("Người nhận (bên nhận)", "Received by"),
    "fonds_reference": ("Số biên bản / tham chiếu", "Their reference"),
    "fonds_received_on": ("Ngày nhận", "Received on"),
    "fonds_confirm": ("Ghi nhận xác nhận của bên nhận", "Record the receipt"),
    "fonds_confirmed": ("Bên nhận đã xác nhận", "Receipt confirmed"),
    "fonds_stations": ("Trạm quét và phông", "Scan stations and their fonds"),
    "fonds_assigned": ("Phông được quét", "Fonds it scans for"),
    "fonds_assign_hint": (
        "Mã phông cách nhau bởi dấu cách; phông đầu tiên là mặc định.",
        "Fonds codes separated by spaces; the first is the default.",
    ),
    "fonds_new": ("Thêm phông", "New fonds"),
    "fonds_place_filter": (
        "Lọc theo địa danh của phông (tên cũ hoặc mới):",
        "Filter by the fonds' place (old or new name):",
    ),
    "fonds_create": ("Tạo phông", "Create the fonds"),
    "language": ("English", "Tiếng Việt"),
    # The plan and progress against it (issue 21; server/web/plan.py).
    "plan": ("Kế hoạch, tiến độ", "Plan and progress"),
    "plan_title": ("Tiến độ số hóa theo kế hoạch", "Digitisation progress against the plan"),
    "plan_import": ("Nhập mục lục hồ sơ", "Import an inventory"),
    "plan_import_hint": (
        "Tệp Danh mục / Mục lục hồ sơ (.xlsx hoặc .csv) của phông. Xem trước rồi mới nhập; "
        "có dòng lỗi thì không nhập dòng nào.",
        "The fonds' Danh mục / Mục lục hồ sơ (.xlsx or .csv). Preview first; if any line is "
        "refused, nothing is imported.",
    ),
    "plan_file": ("Tệp mục lục", "Inventory file"),
    "plan_year": (
        "Năm của mục lục (nếu các dòng không ghi)",
        "The inventory's year (if its lines give none)",
    ),
    "plan_columns": ("Chỉ định cột (tùy chọn)", "Columns (optional)"),
    "plan_preview": ("Xem trước", "Preview"),
    "plan_confirm": ("Nhập {n} hồ sơ vào kế hoạch", "Import {n} hồ sơ into the plan"),
    "plan_imported": (
        "Đã nhập {n} hồ sơ ({pages} trang) vào kế hoạch phông {fonds}.",
        "Imported {n} hồ sơ ({pages} pages) into the plan of fonds {fonds}.",
    ),
    "plan_refused": (
        "Không nhập: sửa các dòng sau trong tệp rồi thử lại.",
        "Nothing imported: correct these lines in the file and try again.",
    ),
    "plan_header_at": ("Dòng tiêu đề cột", "Header line(s)"),
    "plan_line": ("Dòng", "Line"),
    "plan_reason": ("Lý do", "Reason"),
    "plan_skipped": ("Dòng bỏ qua", "Lines skipped"),
    "plan_field": ("Trường", "Field"),
    "plan_column": ("Cột", "Column"),
    "fonds": ("Phông lưu trữ", "Fonds"),
    "level_fonds": ("Phông", "Fonds"),
    "level_commune": ("Xã, phường", "Commune"),
    "level_district": ("Huyện (trước 2025)", "District (before 2025)"),
    "level_province": ("Tỉnh", "Province"),
    "stage_planned": ("Kế hoạch", "Planned"),
    "stage_scanned": ("Đã quét", "Scanned"),
    "stage_received": ("Đã nhận", "Received"),
    "stage_catalogued": ("Đã biên mục", "Catalogued"),
    "stage_checked": ("Đã kiểm tra", "Checked"),
    "stage_handed_over": ("Đã nộp lưu", "Handed over"),
    "plan_ho_so": ("Hồ sơ", "Hồ sơ"),
    "plan_pages": ("Trang", "Pages"),
    "plan_rate": ("Trang/ngày (14 ngày)", "Pages/day (14 days)"),
    "plan_trend": ("Xu hướng", "Trend"),
    "trend_up": ("tăng", "rising"),
    "trend_down": ("giảm", "falling"),
    "trend_flat": ("đều", "steady"),
    "plan_forecast": ("Dự báo xong", "Forecast finish"),
    "plan_deadline": ("Hạn nộp lưu", "Handover due"),
    "plan_on_time": ("Kịp hạn", "On time"),
    "plan_late": ("Trễ {days} ngày", "{days} days late"),
    "plan_no_forecast": (
        "Chưa dự báo được (14 ngày qua không nhận trang nào)",
        "No forecast (no page received in 14 days)",
    ),
    "plan_done": ("Đã xong", "Done"),
    "plan_no_page_count": ("{n} hồ sơ không ghi số trang", "{n} hồ sơ without a page count"),
    "plan_unmatched": (
        "Lô chưa khớp hồ sơ nào trong kế hoạch",
        "Batches matching no planned hồ sơ",
    ),
    "plan_match": ("Khớp", "Match"),
    "plan_match_hint": ("phông|mã hồ sơ", "fonds|file code"),
    "plan_more": ("… và {n} lô nữa", "… and {n} more batches"),
    "plan_updating": (
        "Số liệu đang được tính lại theo thao tác vừa rồi (khoảng {seconds} giây); bảng dưới"
        " đây là số liệu trước đó, trang sẽ tự tải lại.",
        "The figures are being counted again after the last change (about {seconds} s); the"
        " table below is the previous count, and the page reloads by itself.",
    ),
    "plan_matched": (
        "Đã khớp lô {batch} với hồ sơ trong kế hoạch.",
        "Matched batch {batch} to a planned hồ sơ.",
    ),
    "plan_unscanned": ("Hồ sơ trong kế hoạch chưa quét", "Planned hồ sơ not scanned yet"),
    "plan_none": ("Chưa có phông nào có kế hoạch.", "No fonds has a plan yet."),
    "thong_ke": ("Thống kê tài liệu theo phông", "Records per fonds"),
    "plan_export_xlsx": ("Thống kê (XLSX)", "Statistics (XLSX)"),
    "plan_export_pdf": ("Thống kê (PDF)", "Statistics (PDF)"),
    "forecast_chart": ("Trang đã nhận và dự báo", "Pages received and forecast"),
}


# What a station said for each error key it reports (server/web/station_errors.py, generated
# from agent/messages.py): the station list reads "Ổ đĩa sắp đầy…" rather than
# ``disk_full: <English detail>`` (the detail stays in the cell's tooltip).
TEXT.update({f"station_error.{k}": v for k, v in STATION_ERRORS.items()})


# A flag or review reason this server has no words for (a newer station's): said to be one,
# with its key, rather than the bare key ("reason_glued_words") as if it were text.
UNKNOWN = {
    "flag_": ("dấu hiệu chưa có tên: {key}", "unnamed flag: {key}"),
    "reason_": ("lý do chưa có tên: {key}", "unnamed reason: {key}"),
}


def t(key: str, lang: str = "vi", **values: object) -> str:
    found = TEXT.get(key)
    if found is None:
        prefix = next((p for p in UNKNOWN if key.startswith(p)), None)
        if prefix is None:
            return key
        vi, en = UNKNOWN[prefix]
        values = {"key": key.removeprefix(prefix)}
    else:
        vi, en = found
    text = vi if lang == "vi" else en
    return text.format(**values) if values else text


# Vietnamese writes 1.234,5 (thousands dot, decimal comma; TCVN / Nghị định 30/2020 style);
# English 1,234.5.
SEPARATORS = {"vi": (".", ","), "en": (",", ".")}


def number(value: float | int | None, lang: str = "vi", digits: int = 0) -> str:
    """``value`` with ``digits`` decimals, grouped by thousands, in ``lang``'s separators;
    "—" for None or a value that is not a finite number."""
    if value is None or isinstance(value, bool):
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "—"
    thousands, decimal = SEPARATORS.get(lang, SEPARATORS["vi"])
    text = f"{x:,.{max(0, digits)}f}"  # Python's own: "," thousands, "." decimal
    return text.translate({ord(","): thousands, ord("."): decimal})
