from onlineddl.shadowcheck import _shape

CREATE = """CREATE TABLE `_t_new` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `pid` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `pid` (`pid`),
  CONSTRAINT `_t_new_ibfk_1` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=301 DEFAULT CHARSET=latin1"""


def test_the_counter_and_the_carried_constraints_are_not_shape() -> None:
    without = CREATE.replace(",\n  CONSTRAINT `_t_new_ibfk_1` FOREIGN KEY (`pid`) "
                             "REFERENCES `parent` (`id`)", "").replace("=301", "=5000")
    assert _shape(CREATE, {"_t_new_ibfk_1"}) == _shape(without, {"_t_new_ibfk_1"})


def test_a_constraint_the_run_does_not_carry_is_shape() -> None:
    assert _shape(CREATE, set()) != _shape(CREATE.replace("`parent`", "`other`"), set())
    assert "_t_new_ibfk_1" in _shape(CREATE, {"_odl_x"})


def test_a_key_is_shape() -> None:
    assert _shape(CREATE, set()) != _shape(CREATE.replace("KEY `pid`", "UNIQUE KEY `pid`"),
                                           set())
