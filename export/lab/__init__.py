"""The lab server: tablets sync their operation logs and blobs here, workstations push models.

`appliance-lab serve DIR` runs it (ASGI on uvicorn, SQLite in DIR by default, PostgreSQL with
`--database`); `appliance-lab enroll` makes one-time codes for tablets and workstations.
"""
