"""What a station shows its operator for each error key it reports (telemetry
``last_error`` is ``key: detail``). GENERATED from agent/messages.py by
scripts/error_table.py --write; tests/test_runbooks.py keeps it in step. Placeholders
are shown as "…"."""
# ruff: noqa: E501

# fmt: off
STATION_ERRORS: dict[str, tuple[str, str]] = {
    'scan_no_paper': ('Khay nạp giấy trống — hãy đặt giấy vào rồi bấm nút lại.', 'The feeder is empty — load paper and press the button again.'),
    'scanner_not_found': ('Không tìm thấy máy quét. Kiểm tra cáp USB và nguồn điện của máy quét.', "Scanner not found. Check the scanner's USB cable and power."),
    'scanner_busy': ('Máy quét đang bận (một chương trình khác đang dùng). Chờ một lát rồi thử lại.', 'The scanner is busy (another program is using it). Wait a moment and try again.'),
    'scanner_jammed': ('Kẹt giấy. Đã giữ … trang đã quét. Gỡ giấy kẹt, đặt lại các trang còn lại rồi bấm nút để quét tiếp.', 'Paper jam. The … page(s) scanned so far are kept. Clear the jam, reload the remaining pages and press the button to continue.'),
    'scanner_cover_open': ('Nắp máy quét đang mở. Đã giữ … trang. Đóng nắp rồi bấm nút để quét tiếp.', 'The scanner cover is open. … page(s) kept. Close it and press the button.'),
    'scanner_double_feed': ('Máy quét báo kéo 2 tờ cùng lúc. Đã giữ … trang. Đặt lại tờ cuối rồi quét tiếp.', 'The scanner fed two sheets at once. … page(s) kept. Reload the last sheet.'),
    'scanner_failed': ('Máy quét gặp lỗi. Đã giữ … trang đã quét. Tắt/bật máy quét rồi thử lại.', 'The scanner failed. The … page(s) scanned so far are kept. Power-cycle the scanner and try again.'),
    'disk_full': ('Ổ đĩa sắp đầy — không nhận bản quét mới. Hãy đồng bộ hoặc gọi cán bộ kỹ thuật.', 'The disk is nearly full — new scans are refused. Sync, or call the technician.'),
    'write_failed': ('Không ghi được tệp lên ổ đĩa. Gọi cán bộ kỹ thuật.', 'A file could not be written to disk. Call the technician.'),
    'file_error': ('Không đọc hoặc ghi được tệp trên máy. Dữ liệu đã lưu vẫn an toàn. Gọi cán bộ kỹ thuật.', 'A file on this station cannot be read or written. Saved data is safe. Call the technician.'),
    'outbox_locked': ('Dịch vụ sohoa đang chạy — hãy bấm nút trên máy quét thay vì dùng lệnh này.', 'The sohoa service is running — press the scan button instead of this command.'),
    'import_refused': ('Không đọc được tệp “…” (tệp hỏng hoặc không phải ảnh, PDF). Các tệp khác vẫn được giữ.', 'Cannot read “…” (damaged, or not an image or PDF). The other files are kept.'),
    'config_invalid': ('Cài đặt của trạm quét bị sai. Gọi cán bộ kỹ thuật (chi tiết ở dòng nhật ký phía trên).', "The station's settings are wrong. Call the technician (details in the log line above)."),
    'device_not_enrolled': ('Máy quét này chưa được đăng ký với kho lưu trữ nên chưa gửi được. Các trang đã quét vẫn được giữ an toàn trên máy. Gọi cán bộ kỹ thuật để đăng ký thiết bị.', 'This station is not enrolled with the archive yet, so nothing can be sent. Pages already scanned are kept safe here. Call the technician to enrol it.'),
    'wrong_user': ('Lệnh này phải chạy bằng tài khoản của dịch vụ sohoa (sudo -u … sohoa-agent …), không chạy bằng root hay tài khoản khác.', "Run this as the sohoa service's user (sudo -u … sohoa-agent …), not as root or another user."),
    'broker_unreachable': ('Không kết nối được kho lưu trữ. Dữ liệu vẫn an toàn trên máy, sẽ tự gửi lại sau.', 'Cannot reach the archive. The data is safe here and will be sent later.'),
    'broker_refused': ('Kho lưu trữ từ chối trạm quét này (trạm đã bị thu hồi hoặc sai mật khẩu). Dữ liệu vẫn an toàn trên máy. Gọi cán bộ kỹ thuật.', 'The archive refused this station (revoked, or a wrong password). The data is safe here. Call the technician.'),
    'sync_timeout': ('Chưa gửi xong sau … giây: còn … trang chờ máy chủ xác nhận. Dữ liệu vẫn an toàn trên máy.', "Not finished after … s: … page(s) await the server's receipt. The data is safe here."),
    'ocr_unavailable': ('Thiếu phần mềm nhận dạng chữ. Gọi cán bộ kỹ thuật.', 'The text recognition software is missing. Call the technician.'),
    'internal_error': ('Lỗi không mong muốn. Dữ liệu đã lưu vẫn an toàn. Gọi cán bộ kỹ thuật.', 'Unexpected error. Saved data is safe. Call the technician.'),
    'coversheet_invalid': ('Không tạo được tờ bìa: …', 'Cannot make cover sheets: …'),
    'export_no_target': ('Không thấy ổ USB tại “…”. Kiểm tra USB đã được cắm và mở (mount) chưa.', 'No USB disk at “…”. Check that it is plugged in and mounted.'),
    'export_no_space': ('USB không đủ chỗ: cần … MB, chỉ còn trống … MB. Chưa ghi gì. Hãy dùng USB khác hoặc xóa bớt tệp trên USB.', 'Not enough room on the USB disk: … MB needed, … MB free. Nothing was written. Use another disk or free some space on it.'),
    'export_write_failed': ('Ghi ra USB bị lỗi. Bản chép dở đã được bỏ; dữ liệu trên máy vẫn an toàn. Thử lại hoặc dùng USB khác.', 'Writing to the USB disk failed. The partial copy was removed; the data on this device is safe. Try again or use another disk.'),
    'export_quarantined': ('Lô … bị cách ly: tệp trên máy đã bị thay đổi. Gọi cán bộ kỹ thuật.', 'Batch … quarantined: a local file changed. Call the technician.'),
    'receipts_refused': ('Bỏ qua biên nhận “…”: không hợp lệ hoặc không có chữ ký của kho lưu trữ.', 'Ignored receipt “…”: invalid, or not signed by the archive.'),
    'receipts_server_refused': ('Máy chủ đã từ chối … tệp trong gói USB; các trang liên quan vẫn giữ trên máy và sẽ được chép lại ở lần chép sau (sohoa-agent export).', 'The server refused … file(s) of the USB bundle; the pages concerned stay on this device and go again with the next export (sohoa-agent export).'),
    'startup_ocr_missing': ('Không khởi động được: thiếu tesseract hoặc dữ liệu tiếng Việt của nó. Cán bộ kỹ thuật cài bằng: …', 'Cannot start: tesseract or its Vietnamese data is missing. The technician installs it with: …'),
    'startup_sane_missing': ('Không khởi động được: thiếu thư viện máy quét SANE. Cán bộ kỹ thuật cài bằng: …', 'Cannot start: the SANE scanner library is missing. The technician installs it with: …'),
    'startup_broker_invalid': ('Không khởi động được: địa chỉ máy chủ tin nhắn (MQTT) sai: …. Sửa ….', 'Cannot start: the message broker (MQTT) address is wrong: …. Fix ….'),
    'button.port_missing': ('Không thấy nút bấm quét (hộp nút hoặc bàn đạp). Kiểm tra dây cắm, rồi khởi động lại trạm quét.', 'The scan button (button box or pedal) is not there. Check its cable, then restart the station.'),
    'button.port_permission': ('Dịch vụ sohoa không được phép dùng nút bấm quét. Gọi cán bộ kỹ thuật.', 'The sohoa service may not use the scan button. Call the technician.'),
    'button.bad_settings': ('Cài đặt nút bấm quét không đúng. Gọi cán bộ kỹ thuật.', "The scan button's settings are wrong. Call the technician."),
    'button.unknown_kind': ('Cài đặt nút bấm quét không đúng. Gọi cán bộ kỹ thuật.', "The scan button's settings are wrong. Call the technician."),
    'button.pyserial_too_old': ('Phần mềm điều khiển nút bấm quét đã cũ. Gọi cán bộ kỹ thuật.', "The scan button's driver software is too old. Call the technician."),
    'profile.invalid': ('Tệp mô tả thiết bị quét bị lỗi. Gọi cán bộ kỹ thuật.', 'A scanner description file is broken. Call the technician.'),
    'profile.duplicate': ('Tệp mô tả thiết bị quét bị trùng. Gọi cán bộ kỹ thuật.', 'A scanner description file is duplicated. Call the technician.'),
    'profile.no_generic': ('Thiếu tệp mô tả thiết bị quét chung. Gọi cán bộ kỹ thuật.', 'The generic scanner description is missing. Call the technician.'),
    'profile.source_unsupported': ('Máy quét này không có khay giấy được chọn. Đặt giấy lên mặt kính hoặc gọi cán bộ kỹ thuật.', 'This scanner has no such paper source. Use the glass, or call the technician.'),
    'profile.source_unavailable': ('Máy quét này không có khay giấy được chọn. Đặt giấy lên mặt kính hoặc gọi cán bộ kỹ thuật.', 'This scanner has no such paper source. Use the glass, or call the technician.'),
    'profile.mode_unsupported': ('Máy quét này không quét được chế độ màu cần thiết. Gọi cán bộ kỹ thuật.', 'This scanner cannot scan in the colour mode required. Call the technician.'),
    'profile.mode_unavailable': ('Máy quét này không quét được chế độ màu cần thiết. Gọi cán bộ kỹ thuật.', 'This scanner cannot scan in the colour mode required. Call the technician.'),
    'profile.option_missing': ('Máy quét này không cho chọn độ phân giải. Gọi cán bộ kỹ thuật.', 'This scanner does not let the resolution be set. Call the technician.'),
}
# fmt: on
