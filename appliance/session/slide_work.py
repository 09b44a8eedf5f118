"""One region of a slide open for points and boxes, shown on the whole slide (no Kivy).

The expert sees the slide (pan and zoom from the pyramid, `slide_view`) and marks cells in
level-0 coordinates; the marks belong to the region's label (an ordinary `ImageWork`, so
versions, drafts, time and control scoring are those of any image), stored in the region's
own pixel coordinates. A mark outside the region is refused: it would belong to no task.
"""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.labels import CellObject
from appliance.session import marks
from appliance.session.slide_view import TileCache, read_tile
from appliance.session.workflow import ImageWork
from appliance.slides import open_slide
from appliance.store.project import Project
from appliance.store.slides import find_slide, region_of

__all__ = ["SlideWork"]


class SlideWork:
    """A region's label edited on its slide; `close()` releases the slide file."""

    def __init__(
        self,
        project: Project,
        image_id: int,
        author: str,
        active_class: int = 1,
    ) -> None:
        region = region_of(project, image_id)
        if region is None:
            raise ApplianceError(f"image {image_id} is not a region of a slide")
        self.region = region
        self.record = find_slide(project, str(region.slide_id))
        path = self.record.path
        self.slide = open_slide(path, lambda: project.open_original(path))
        self.tiles = TileCache(lambda key: read_tile(self.slide, key))
        self.work = ImageWork(project, image_id, author, active_class)

    @property
    def active_class(self) -> int:
        return self.work.session.active_class

    @active_class.setter
    def active_class(self, class_id: int) -> None:
        self.work.session.active_class = class_id

    def inside(self, x: float, y: float) -> bool:
        """Whether a level-0 point lies on the region."""
        r = self.region
        return r.x <= x <= r.x + r.width and r.y <= y <= r.y + r.height

    def place_point(self, x: float, y: float) -> bool:
        """A point of the active class at level-0 (x, y); False when off the region."""
        if not self.inside(x, y):
            return False
        return self.work.session.place_point(x - self.region.x, y - self.region.y) is not None

    def draw_box(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """A box of the active class between two level-0 corners, cut to the region; False
        when it misses the region or is too small."""
        rx, ry = self.region.x, self.region.y
        rect = self.work.session.draw_box(x0 - rx, y0 - ry, x1 - rx, y1 - ry)
        return rect is not None

    def grab(self, x: float, y: float, tolerance: float) -> marks.MarkDrag:
        """What the pen landing at level-0 (x, y) takes hold of: a point, a box's corner or
        edge within `tolerance` level-0 px, else nothing (`marks.grab`, the `MARK` gesture:
        a tap places a point, a drag draws a box)."""
        rx, ry = self.region.x, self.region.y
        return marks.grab(self.work.session.objects, marks.MARK, x - rx, y - ry, tolerance)

    def shaped(self, drag: marks.MarkDrag, x: float, y: float) -> CellObject | None:
        """The mark the pen shapes with the drag now at level-0 (x, y), in level-0
        coordinates (drawn while the pen moves)."""
        rx, ry = self.region.x, self.region.y
        obj = marks.shaped(drag, self.work.session, x - rx, y - ry)
        return None if obj is None else obj.shifted(rx, ry)

    def finish(
        self, drag: marks.MarkDrag, x: float, y: float, tapped: bool
    ) -> tuple[bool, int | None]:
        """End the drag at level-0 (x, y): whether the label changed (one undo step), and the
        mark to select (a tapped one). Off the region a tap places nothing and a box is cut to
        it."""
        rx, ry = self.region.x, self.region.y
        rect, index = marks.finish(self.work.session, drag, x - rx, y - ry, tapped, 0.0)
        return rect is not None, index

    def object_at(self, x: float, y: float, tolerance: float) -> int | None:
        """Index of the point (within `tolerance` level-0 pixels) or box under level-0 (x, y)."""
        return self.work.session.object_at(x - self.region.x, y - self.region.y, tolerance)

    def delete_object(self, index: int) -> bool:
        """Remove a point or box (one undo step)."""
        return self.work.session.delete_object(index) is not None

    def reclass_object(self, index: int, class_id: int) -> bool:
        """Give a point or box another class (one undo step)."""
        return self.work.session.set_object_class(index, class_id) is not None

    def objects(self) -> list[CellObject]:
        """The region's points and boxes in level-0 coordinates (for drawing on the slide)."""
        rx, ry = self.region.x, self.region.y
        return [o.shifted(rx, ry) for o in self.work.session.objects]

    def undo(self) -> bool:
        """Undo the last mark (or any other edit of this label)."""
        return self.work.session.undo() is not None

    def save(self) -> int:
        """A new version of the region's label; returns its id."""
        return self.work.save()

    def close(self) -> None:
        """Keep unsaved marks as a draft (as leaving any image does) and close the slide."""
        try:
            self.work.park()
        finally:
            self.slide.close()
