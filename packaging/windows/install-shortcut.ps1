# Put the tablet app (built on Windows with `python packaging\build.py`) in the user's
# Startup folder, so it opens fullscreen at every login. Not tried on Windows here: see
# docs/packaging.md.
#   powershell -ExecutionPolicy Bypass -File packaging\windows\install-shortcut.ps1
param([string]$App = (Join-Path $PSScriptRoot "..\..\dist\appliance\appliance.exe"))
$ErrorActionPreference = "Stop"
if (-not (Test-Path $App)) { Write-Error "$App missing: build the app first"; exit 2 }
$workspace = Join-Path $env:USERPROFILE "Annotations"
New-Item -ItemType Directory -Force -Path $workspace | Out-Null
$startup = [Environment]::GetFolderPath("Startup")
$shell = New-Object -ComObject WScript.Shell
$link = $shell.CreateShortcut((Join-Path $startup "Annotation appliance.lnk"))
$link.TargetPath = (Resolve-Path $App).Path
$link.Arguments = "run `"$workspace`" --kiosk"
$link.WorkingDirectory = $workspace
$link.WindowStyle = 7  # minimised console; the app window itself is fullscreen
$link.Save()
Write-Output "shortcut in $startup"
