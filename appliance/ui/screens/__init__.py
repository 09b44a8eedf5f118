"""The app's screens, by name (the ScreenManager names them so)."""

from appliance.ui.screens.annotate import AnnotateScreen
from appliance.ui.screens.gallery import GalleryScreen
from appliance.ui.screens.highscore import HighScoreScreen
from appliance.ui.screens.home import HomeScreen
from appliance.ui.screens.lock import LockScreen
from appliance.ui.screens.models import ModelsScreen
from appliance.ui.screens.settings import SettingsScreen
from appliance.ui.screens.welcome import WelcomeScreen

SCREENS = {
    "welcome": WelcomeScreen,
    "home": HomeScreen,
    "annotate": AnnotateScreen,
    "models": ModelsScreen,
    "settings": SettingsScreen,
    "gallery": GalleryScreen,
    "highscore": HighScoreScreen,
    "lock": LockScreen,
}
