"""What goes in and out: CSV and differential exports, consultation packages and replies, the PDF report's content,
watched camera folders."""
